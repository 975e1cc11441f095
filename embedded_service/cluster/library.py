"""The Redis 7 FUNCTION library behind cluster mode: one function per operation.

Every function takes one key, the deployment's hash-tagged prefix ``{sd:<namespace>}``, and builds
the other key names under it, so every call touches one hash slot. Each function reads ``TIME``
(never the client's clock), reclaims what is due (dead processes' waiters, timed-out waiters,
expired holders), applies its change, then pumps grants while ``in_use < limit`` and the queue is
not paused, at most ``PUMP_MAX`` per queue per call (the rest on the next tick).

Keys under the prefix P (all times are Redis milliseconds):
  P:queues            set of queue names
  P:q:<n>:cfg         hash limit, max_waiting (-1 = none), paused (0/1), rate (admissions/s, '' = none),
                      burst, tat (the rate's next admission time, ms: GCRA as in engine/queues.py),
                      timeout_ms (an acquire's wait when it names none; -1 = none)
  P:q:<n>:wait        zset waiter id -> (priority + 2^20) * 2^32 + arrival (lower first)
  P:q:<n>:wdl         zset waiter id -> deadline (waiters with a timeout only)
  P:q:<n>:gw:<H>      zset: the queue's GPU waiters for host H, scored as in P:q:<n>:wait (H's line in the queue)
  P:q:<n>:hold        zset lease id -> expiry
  P:q:<n>:st          hash totals (granted, released, timed_out, rejected, expired, revoked, cancelled,
                      abandoned, bad_releases)
                      and marks (mark_in_use, mark_in_use_at, mark_waiting, mark_waiting_at)
  P:w:<wid>           hash q, o (owner), p (process), t0 (enqueued at), lm (lease ms), x (1: explicit TTL),
                      and for a GPU request g (GPUs), gm (MiB per GPU), h (host id)
  P:l:<lid>           hash q, o, p, f (fence), t0 (granted at), w (waiter id), lm (lease ms), and m (the
                      grant message) while a grant pushed to a process's inbox is not yet claimed;
                      a GPU lease also h (host), d (device indices, comma-separated), u (their UUIDs), gm
  P:g:<wid>           lease id of a waiter's grant (so a retried acquire is idempotent), deleted with the lease
  P:procs             zset process id -> alive until
  P:pw:<proc>         set of that process's waiter ids
  P:in:<proc>         list: that process's inbox (grants, time-outs, cancels, lost leases as JSON)

Claims: a grant pushed to another process starts with the claim TTL. Popping it from the inbox is the
claim: when the claim TTL runs out and the message is no longer in the inbox of a live process, the
lease is extended to its full TTL instead of coming back (no claim round trip on the hand-off path);
a grant still in the inbox (slow or dead process) is taken out of it and comes back.
GPUs (per host id H; see cluster/gpus.py for the publisher):
  P:h:H:figs          JSON list of H's devices [{i, u, t (total MiB), m (used MiB), s (health), b (budget)}],
                      written with a TTL by H's elected publisher: when it dies they expire and H offers no GPU
  P:h:H:pub           the publisher's process id (the election, same TTL)
  P:h:H:res           hash <index> -> MiB reserved by leases, n<index> -> leases on it
  P:h:H:pq            hash <index>:<queue> -> that queue's leases on the device (the per-GPU cap)
  P:h:H:gq            hash queue -> its GPU waiters for H (whose line heads H's pump compares)
  P:gpuhosts          set of hosts with GPU waiters; P:hosts: every host that published (until sd_hosts prunes it)
  P:hb                hash host -> its newest heartbeat (ms, noted by init and tick; a process id starts with its
                      host id); a host's field goes with its last process, or (a host that published GPUs) when
                      sd_hosts prunes it
  P:q:<n>:cfg also holds pg (per-GPU cap, -1 none) and pl (placement: spread | pack)
  P:seq P:fence       counters (arrival, fence); P:epoch (created once); P:opt (claim_ms); P:tick (gate)
  P:events            stream, capped at about EVENTS_MAX entries: one per lease event of the deployment, written
                      by the function that made it (so each appears once, in the order Redis ran them); fields
                      e = 'lease', n (granted | released | expired | revoked | timed_out | cancelled | waiting |
                      rejected), x ('l' a lease, 'w' a waiter, '' neither), i (its id), q, o (owner), k (the token
                      name that made it, '' none), and where the event has them ms (waited or held, ms), f (fence),
                      p (priority), wn (waiting). Python entries beside them (jobs, audit): cluster/events.py.
  P:w:<wid> and P:l:<lid> also hold k (that token name).
  P:hist:lead         the history writer's process id (an election, PX); P:hist:seq its point counter;
  P:hist:pts          list of history points (JSON {n, t, c: changed queues, f: 1 for a full point, ...}), at most
                      the writer's max_points; P:hist:base hash queue -> JSON [in_use, waiting, limit] before the
                      oldest point (cluster/history.py)
"""

from __future__ import annotations

LIBRARY_NAME = "slotdeck_v1"

LIBRARY = r"""#!lua name=slotdeck_v1

local PUMP_MAX = 64
local RECLAIM_MAX = 64
local PRIO_OFFSET = 1048576
local TWO32 = 4294967296
local EVENTS_MAX = 10000
local TEXT_MAX = 1024  -- owner and token names are cut to this many bytes in events (entries stay bounded)

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function now_ms() return math.floor(now_us() / 1000) end

local function qk(P, name, part) return P .. ':q:' .. name .. ':' .. part end

local function fmt(n) return string.format('%.0f', n) end

-- One lease event on the deployment's stream (see P:events above); `...`: extra field/value pairs.
local function ev(P, n, x, id, name, owner, maker, ...)
  redis.call('XADD', P .. ':events', 'MAXLEN', '~', EVENTS_MAX, '*', 'e', 'lease', 'n', n, 'x', x, 'i', id,
    'q', name, 'o', string.sub(owner or '', 1, TEXT_MAX), 'k', string.sub(maker or '', 1, TEXT_MAX), ...)
end

-- The event of a lease (x = 'l') or a waiter (x = 'w') that ends now, read from its record before it goes;
-- `timed`: with how long it was held or waited (ms).
local function end_ev(P, n, x, id, now, timed)
  local r = redis.call('HMGET', P .. ':' .. x .. ':' .. id, 'q', 'o', 'k', 't0')
  if not r[1] then return end
  if timed then
    ev(P, n, x, id, r[1], r[2], r[3], 'ms', fmt(now - tonumber(r[4] or now)))
  else
    ev(P, n, x, id, r[1], r[2], r[3])
  end
end

local function lease_ev(P, n, lid, now, timed) end_ev(P, n, 'l', lid, now, timed) end
local function waiter_ev(P, n, wid, now, timed) end_ev(P, n, 'w', wid, now, timed) end

-- Push a message to a process's inbox; returns the encoded message, or nil if that process is gone.
local function push(P, proc, msg)
  if not proc then return nil end
  if not redis.call('ZSCORE', P .. ':procs', proc) then return nil end
  local inbox = P .. ':in:' .. proc
  local text = cjson.encode(msg)
  redis.call('RPUSH', inbox, text)
  redis.call('PEXPIRE', inbox, 120000)
  return text
end

-- Rate (GCRA, ms): true when an admission may happen now; `take` spends it.
local function rate_allows(cfgk, now, take)
  local r = redis.call('HMGET', cfgk, 'rate', 'burst', 'tat')
  if not r[1] or r[1] == '' then return true end
  local interval = 1000 / tonumber(r[1])
  local tat = tonumber(r[3] or now)
  if tat - (tonumber(r[2]) - 1) * interval > now + 0.001 then return false end
  if take then redis.call('HSET', cfgk, 'tat', string.format('%.4f', math.max(tat, now) + interval)) end
  return true
end

-- ms until the rate admits again (0 if it does now, nil without a rate)
local function rate_due(cfgk, now)
  local r = redis.call('HMGET', cfgk, 'rate', 'burst', 'tat')
  if not r[1] or r[1] == '' then return nil end
  local interval = 1000 / tonumber(r[1])
  return math.max(0, tonumber(r[3] or now) - (tonumber(r[2]) - 1) * interval - now)
end

local function bump(P, name, field, by)
  redis.call('HINCRBY', qk(P, name, 'st'), field, by or 1)
end

local function marks(P, name, now)
  local st = qk(P, name, 'st')
  local in_use = redis.call('ZCARD', qk(P, name, 'hold'))
  local waiting = redis.call('ZCARD', qk(P, name, 'wait'))
  local m = redis.call('HMGET', st, 'mark_in_use', 'mark_waiting')
  if in_use > (tonumber(m[1]) or 0) then
    redis.call('HSET', st, 'mark_in_use', in_use, 'mark_in_use_at', fmt(now))
  end
  if waiting > (tonumber(m[2]) or 0) then
    redis.call('HSET', st, 'mark_waiting', waiting, 'mark_waiting_at', fmt(now))
  end
end

-- A holder past its expiry: true when it still belongs to its process because it is a pushed grant
-- that process popped from its inbox (then it now runs for its full TTL), false when the slot must come back.
local function claimed_late(P, name, lid, now)
  local lk = P .. ':l:' .. lid
  local l = redis.call('HMGET', lk, 'm', 'p', 'lm')
  if not l[1] then return false end
  redis.call('HDEL', lk, 'm')
  local alive = tonumber(redis.call('ZSCORE', P .. ':procs', l[2]) or '0') > now
  if alive and redis.call('LREM', P .. ':in:' .. l[2], 1, l[1]) == 0 then
    redis.call('ZADD', qk(P, name, 'hold'), now + tonumber(l[3]), lid)
    return true
  end
  return false
end

-- Delete a lease record (and the retry marker of an inline grant); returns its process id.
local function drop_lease(P, lid)
  local l = redis.call('HMGET', P .. ':l:' .. lid, 'p', 'w', 'h', 'd', 'gm', 'q')
  if l[2] then redis.call('DEL', P .. ':g:' .. l[2]) end
  if l[3] and l[4] then  -- a GPU lease: its devices' reservations and per-queue counts go
    local H = P .. ':h:' .. l[3]
    for i in string.gmatch(l[4], '%d+') do
      if redis.call('HINCRBY', H .. ':res', 'n' .. i, -1) <= 0 then
        redis.call('HDEL', H .. ':res', 'n' .. i, i)  -- no lease left on it: nothing stays behind
      else
        redis.call('HINCRBY', H .. ':res', i, 0 - tonumber(l[5]))
      end
      if redis.call('HINCRBY', H .. ':pq', i .. ':' .. l[6], -1) <= 0 then
        redis.call('HDEL', H .. ':pq', i .. ':' .. l[6])
      end
    end
  end
  redis.call('DEL', P .. ':l:' .. lid)
  return l[1]
end

local function drop_waiter(P, name, wid)
  redis.call('ZREM', qk(P, name, 'wait'), wid)
  redis.call('ZREM', qk(P, name, 'wdl'), wid)
  local w = redis.call('HMGET', P .. ':w:' .. wid, 'p', 'h')
  local proc = w[1]
  if w[2] then
    redis.call('ZREM', qk(P, name, 'gw:' .. w[2]), wid)
    if redis.call('HINCRBY', P .. ':h:' .. w[2] .. ':gq', name, -1) <= 0 then
      redis.call('HDEL', P .. ':h:' .. w[2] .. ':gq', name)
    end
  end
  redis.call('DEL', P .. ':w:' .. wid)
  if proc then redis.call('SREM', P .. ':pw:' .. proc, wid) end
  return proc
end

local function host_of(proc) return string.match(proc, '^[^:]*') end

-- A process of host H left: H's heartbeat record goes with its last process, unless H published GPUs
-- (then sd_hosts lets it go once its figures, leases and waiters are gone too).
local function host_left(P, H)
  if redis.call('SISMEMBER', P .. ':hosts', H) == 1 then return end
  for _, proc in ipairs(redis.call('ZRANGE', P .. ':procs', 0, -1)) do
    if host_of(proc) == H then return end
  end
  redis.call('HDEL', P .. ':hb', H)
end

-- Waiters of processes whose heartbeat stopped; returns the queues touched.
local function reclaim_procs(P, now)
  local touched = {}
  local dead = redis.call('ZRANGEBYSCORE', P .. ':procs', '-inf', now, 'LIMIT', 0, 16)
  for _, proc in ipairs(dead) do
    for _, wid in ipairs(redis.call('SMEMBERS', P .. ':pw:' .. proc)) do
      local name = redis.call('HGET', P .. ':w:' .. wid, 'q')
      if name then
        waiter_ev(P, 'cancelled', wid, now, false)
        drop_waiter(P, name, wid)
        bump(P, name, 'abandoned')
        touched[name] = true
      end
    end
    redis.call('DEL', P .. ':pw:' .. proc, P .. ':in:' .. proc)
    redis.call('ZREM', P .. ':procs', proc)
    host_left(P, host_of(proc))
  end
  return touched
end

local function reclaim_queue(P, name, now)
  local hold = qk(P, name, 'hold')
  for _, lid in ipairs(redis.call('ZRANGEBYSCORE', hold, '-inf', now, 'LIMIT', 0, RECLAIM_MAX)) do
    if not claimed_late(P, name, lid, now) then
      redis.call('ZREM', hold, lid)
      local wid = redis.call('HGET', P .. ':l:' .. lid, 'w')
      lease_ev(P, 'expired', lid, now, true)
      local proc = drop_lease(P, lid)
      bump(P, name, 'expired')
      -- w: a waiter whose grant message was lost on the way (a reply cut by a reset) waits again
      push(P, proc, {t = 'x', l = lid, r = 'expired', w = wid})
    end
  end
  for _, wid in ipairs(redis.call('ZRANGEBYSCORE', qk(P, name, 'wdl'), '-inf', now, 'LIMIT', 0, RECLAIM_MAX)) do
    waiter_ev(P, 'timed_out', wid, now, true)
    local proc = drop_waiter(P, name, wid)
    bump(P, name, 'timed_out')
    push(P, proc, {t = 't', w = wid})
  end
end

-- Record a grant: a holder expiring at `expiry`, its fence from the counter that never repeats.
-- `maker`: the token name that asked ('' none); `waited_ms`: how long it waited in line.
local function new_lease(P, name, now, wid, owner, proc, expiry, lease_ms, maker, waited_ms)
  local fence = redis.call('INCR', P .. ':fence')
  local lid = 'L' .. fmt(fence)
  redis.call('HSET', P .. ':l:' .. lid, 'q', name, 'o', owner or '', 'p', proc or '',
    'f', fmt(fence), 't0', fmt(now), 'w', wid, 'lm', fmt(lease_ms), 'k', maker or '')
  redis.call('ZADD', qk(P, name, 'hold'), expiry, lid)
  bump(P, name, 'granted')
  ev(P, 'granted', 'l', lid, name, owner, maker, 'ms', fmt(waited_ms), 'f', fmt(fence))
  return lid, fence
end

-- Hand the slot to waiter `wid` (at the head of its line, admissible), with `gpu` = {h, d, u, gm} for a
-- GPU grant. A grant to `self_wid` (the caller of acquire) is returned as {lid, fence, expiry, d, u}
-- instead of pushed, with its full TTL; others start with the claim TTL (see "Claims" above), or their
-- explicit TTL (the holder renews it itself).
local function grant_waiter(P, name, now, wid, self_wid, claim_ms, gpu)
  local w = redis.call('HMGET', P .. ':w:' .. wid, 'o', 'p', 'lm', 'x', 'k', 't0')
  drop_waiter(P, name, wid)
  local lease_ms = tonumber(w[3])
  local by_claim = wid ~= self_wid and w[4] ~= '1'
  local expiry = now + lease_ms
  if by_claim then expiry = now + math.min(claim_ms, lease_ms) end
  local lid, fence = new_lease(P, name, now, wid, w[1], w[2], expiry, lease_ms, w[5], now - tonumber(w[6] or now))
  redis.call('SET', P .. ':g:' .. wid, lid)  -- a retried acquire gets this grant again
  local msg = {t = 'g', w = wid, l = lid, f = fmt(fence), e = fmt(expiry)}
  if gpu then
    local H = P .. ':h:' .. gpu.h
    for _, i in ipairs(gpu.i) do
      redis.call('HINCRBY', H .. ':res', i, gpu.gm)
      redis.call('HINCRBY', H .. ':res', 'n' .. i, 1)
      redis.call('HINCRBY', H .. ':pq', i .. ':' .. name, 1)
    end
    redis.call('HSET', P .. ':l:' .. lid, 'h', gpu.h, 'd', gpu.d, 'u', gpu.u, 'gm', gpu.gm)
    msg.d, msg.u = gpu.d, gpu.u
  end
  if wid == self_wid then return {lid, fence, expiry, msg.d or '', msg.u or ''} end
  local text = push(P, w[2], msg)
  if text and by_claim then redis.call('HSET', P .. ':l:' .. lid, 'm', text) end
  return nil
end

local function claim_ms_of(P) return tonumber(redis.call('HGET', P .. ':opt', 'claim_ms') or '5000') end

-- Grant to the head of the line while capacity (and the rate) allows; a head that needs GPUs stops
-- it (its host's pump decides, below), as in-process.
local function pump(P, name, now, self_wid)
  local cfgk = qk(P, name, 'cfg')
  local cfg = redis.call('HMGET', cfgk, 'limit', 'paused')
  if not cfg[1] or cfg[2] == '1' then return nil end
  local limit = tonumber(cfg[1])
  local hold = qk(P, name, 'hold')
  local wait = qk(P, name, 'wait')
  local in_use = redis.call('ZCARD', hold)
  local claim_ms = claim_ms_of(P)
  local mine = nil
  local n = 0
  while in_use < limit and n < PUMP_MAX do
    local head = redis.call('ZRANGE', wait, 0, 0)
    if #head == 0 then break end
    if redis.call('HEXISTS', P .. ':w:' .. head[1], 'h') == 1 then break end
    if not rate_allows(cfgk, now, true) then break end
    local got = grant_waiter(P, name, now, head[1], self_wid, claim_ms, nil)
    if got then mine = got end
    in_use = in_use + 1
    n = n + 1
  end
  return mine
end

-- GPUs (engine/devices.py, without per-process figures: a lease is charged what it reserved).
local function host_devices(P, H)
  local raw = redis.call('GET', P .. ':h:' .. H .. ':figs')
  if not raw then return {} end
  return cjson.decode(raw)
end

-- MiB admission can still promise on a device, or nil when it takes no memory-bound work now
local function free_mib(dev, reserved)
  if dev.s == 'lost' or dev.s == 'unreadable' then return nil end
  if dev.s == 'unified' then
    if dev.b == nil then return nil end
    return dev.b - reserved
  end
  if dev.t == nil then return nil end
  return dev.t - math.max(dev.m or 0, reserved)
end

-- whether the device could ever give `gm` MiB (a size not read yet may turn out large enough)
local function could_hold(dev, gm)
  if gm == 0 then return true end
  if dev.s == 'unified' then return dev.b ~= nil and dev.b >= gm end
  return dev.t == nil or dev.t >= gm
end

local function usable_count(devs, gm)
  local n = 0
  for _, dev in ipairs(devs) do
    if dev.s ~= 'lost' and could_hold(dev, gm) then n = n + 1 end
  end
  return n
end

local function queue_on(P, H, i, name)
  return tonumber(redis.call('HGET', P .. ':h:' .. H .. ':pq', i .. ':' .. name) or '0')
end

-- Devices for a request on host H: {i = {indices}, d = 'csv', u = 'csv' of UUIDs}, or nil when too few fit.
-- pack: least free memory that suffices first; spread: fewest leases, then most free memory.
local function fit(P, H, devs, name, gpus, gm, pg, placement)
  local res = {}
  local flat = redis.call('HGETALL', P .. ':h:' .. H .. ':res')
  for k = 1, #flat, 2 do res[flat[k]] = tonumber(flat[k + 1]) end
  local cand = {}
  for _, dev in ipairs(devs) do
    local i = tostring(dev.i)
    if dev.s ~= 'lost' and (pg < 0 or queue_on(P, H, i, name) < pg) then
      local free = free_mib(dev, res[i] or 0)
      if gm == 0 or (free ~= nil and free >= gm) then
        local room = free or 1099511627776
        if placement == 'spread' then
          cand[#cand + 1] = {res['n' .. i] or 0, -room, dev.i, dev.u or ''}
        else
          cand[#cand + 1] = {room, 0, dev.i, dev.u or ''}
        end
      end
    end
  end
  if #cand < gpus then return nil end
  table.sort(cand, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[3] < b[3]
  end)
  local chosen = {}
  for k = 1, gpus do chosen[k] = cand[k] end
  table.sort(chosen, function(a, b) return a[3] < b[3] end)
  local idx, ids, uuids, all_uuids = {}, {}, {}, true
  for k, c in ipairs(chosen) do
    idx[k], ids[k] = tostring(c[3]), tostring(c[3])
    if c[4] == '' then all_uuids = false end
    uuids[k] = c[4]
  end
  return {i = idx, d = table.concat(ids, ','), u = all_uuids and table.concat(uuids, ',') or ''}
end

-- GPU heads of host H's lines, across queues, in (priority, arrival) order; the first one that does not
-- fit reserves: nothing behind it is granted until it fits. One held back by its queue's per-GPU cap, or
-- needing a device that is lost or not published, reserves nothing. A queue's line is one for plain
-- waiters (a GPU waiter at its head holds plain ones behind it, as in-process), but its GPU waiters wait
-- only behind those of their own host (P:q:<n>:gw:<H>): another host's full GPUs hold nobody back here.
local function pump_host(P, H, now, self_wid)
  local gq = P .. ':h:' .. H .. ':gq'
  local claim_ms = claim_ms_of(P)
  local devs = host_devices(P, H)
  local mine = nil
  local grants = 0
  for _ = 1, PUMP_MAX do
    local heads = {}
    for _, name in ipairs(redis.call('HKEYS', gq)) do
      local first = redis.call('ZRANGE', qk(P, name, 'wait'), 0, 0)
      local head = redis.call('ZRANGE', qk(P, name, 'gw:' .. H), 0, 0, 'WITHSCORES')
      -- a plain waiter first in line goes first (pump grants it when the queue can: then so could we)
      if #head == 2 and #first == 1 and redis.call('HEXISTS', P .. ':w:' .. first[1], 'h') == 1 then
        local w = redis.call('HMGET', P .. ':w:' .. head[1], 'h', 'g', 'gm')
        local cfgk = qk(P, name, 'cfg')
        local cfg = redis.call('HMGET', cfgk, 'limit', 'paused', 'pg', 'pl')
        if w[1] == H and cfg[1] and cfg[2] ~= '1' and redis.call('ZCARD', qk(P, name, 'hold')) < tonumber(cfg[1])
          and rate_allows(cfgk, now, false) then
          heads[#heads + 1] = {tonumber(head[2]), head[1], name, tonumber(w[2]), tonumber(w[3]),
            tonumber(cfg[3] or '-1'), cfg[4] or 'spread'}
        end
      end
    end
    table.sort(heads, function(a, b) return a[1] < b[1] end)
    local granted = false
    for _, h in ipairs(heads) do
      local wid, name, gpus, gm, pg = h[2], h[3], h[4], h[5], h[6]
      local capped = 0
      if pg >= 0 then
        for _, dev in ipairs(devs) do
          if queue_on(P, H, tostring(dev.i), name) >= pg then capped = capped + 1 end
        end
      end
      if #devs - capped >= gpus then
        local chosen = fit(P, H, devs, name, gpus, gm, pg, h[7])
        if chosen == nil then
          if usable_count(devs, gm) >= gpus then break end  -- it reserves
        else
          rate_allows(qk(P, name, 'cfg'), now, true)
          chosen.h, chosen.gm = H, gm
          local got = grant_waiter(P, name, now, wid, self_wid, claim_ms, chosen)
          if got then mine = got end
          got = pump(P, name, now, self_wid)  -- plain waiters behind it
          if got then mine = got end
          marks(P, name, now)
          granted = true
          grants = grants + 1
          break  -- compare the heads again
        end
      end
    end
    if not granted then break end
  end
  if redis.call('HLEN', gq) == 0 then redis.call('SREM', P .. ':gpuhosts', H) end
  return mine, grants
end

-- Every host with GPU waiters; again while grants were made (a grant may put another host's waiter at
-- the head of its line), a few rounds at most (the rest on the next tick).
local function pump_hosts(P, now)
  for _ = 1, 4 do
    local grants = 0
    for _, H in ipairs(redis.call('SMEMBERS', P .. ':gpuhosts')) do
      local _, n = pump_host(P, H, now, nil)
      grants = grants + n
    end
    if grants == 0 then break end
  end
end

local function settle(P, name, now)
  local touched = reclaim_procs(P, now)
  touched[name] = true
  for q, _ in pairs(touched) do
    reclaim_queue(P, q, now)
    pump(P, q, now, nil)
    marks(P, q, now)
  end
  pump_hosts(P, now)
end

local function epoch_ok(P, epoch)
  return redis.call('GET', P .. ':epoch') == epoch
end

local function beat(P, proc, proc_ms, now)
  redis.call('ZADD', P .. ':procs', now + proc_ms, proc)
end

-- The host's newest heartbeat, noted by the heartbeat calls (init, tick), not on the acquire path
local function beat_host(P, proc, now)
  redis.call('HSET', P .. ':hb', host_of(proc), fmt(now))
end

-- init(P; candidate, min_fence, proc, proc_ms, claim_ms) -> {epoch, created}
redis.register_function('sd_init', function(keys, args)
  local P = keys[1]
  local now = now_ms()
  local created = 0
  local epoch = redis.call('GET', P .. ':epoch')
  if not epoch then
    epoch = args[1]
    redis.call('SET', P .. ':epoch', epoch)
    -- Fences never repeat, even after Redis lost everything: start above the clock in
    -- microseconds (grants run far below a million a second) and above what any caller saw.
    local base = math.max(tonumber(redis.call('GET', P .. ':fence') or '0'), now_us(), tonumber(args[2]))
    redis.call('SET', P .. ':fence', fmt(base))
    created = 1
  else
    local cur = tonumber(redis.call('GET', P .. ':fence') or '0')
    if tonumber(args[2]) > cur then redis.call('SET', P .. ':fence', fmt(tonumber(args[2]))) end
  end
  redis.call('HSET', P .. ':opt', 'claim_ms', args[5])
  beat(P, args[3], tonumber(args[4]), now)
  beat_host(P, args[3], now)
  return {epoch, created}
end)

-- configure(P; name, limit, max_waiting, paused('' = keep), rate('' = none), burst, timeout_ms(-1 none)
--   [, per_gpu(-1 none), placement(pack | spread)]) -> 1
redis.register_function('sd_configure', function(keys, args)
  local P = keys[1]
  local name = args[1]
  local now = now_ms()
  local cfgk = qk(P, name, 'cfg')
  redis.call('SADD', P .. ':queues', name)
  local old = redis.call('HMGET', cfgk, 'rate', 'burst')
  if old[1] ~= args[5] or old[2] ~= args[6] then redis.call('HSET', cfgk, 'tat', fmt(now)) end
  redis.call('HSET', cfgk, 'limit', args[2], 'max_waiting', args[3], 'rate', args[5], 'burst', args[6],
    'timeout_ms', args[7])
  if args[8] then redis.call('HSET', cfgk, 'pg', args[8], 'pl', args[9]) end
  if args[4] ~= '' then redis.call('HSET', cfgk, 'paused', args[4]) end
  redis.call('HSETNX', cfgk, 'paused', '0')
  settle(P, name, now)
  return 1
end)

-- set(P; name, field, value) -> 1, or 0 for an unknown queue. field: limit | paused | max_waiting
redis.register_function('sd_set', function(keys, args)
  local P = keys[1]
  local name = args[1]
  if redis.call('EXISTS', qk(P, name, 'cfg')) == 0 then return 0 end
  redis.call('HSET', qk(P, name, 'cfg'), args[2], args[3])
  settle(P, name, now_ms())
  return 1
end)

-- acquire(P; epoch, proc, proc_ms, name, wid, owner, priority, timeout_ms(-1 none, -2 the queue's), lease_ms,
--   explicit(0/1) [, gpus, gpu_mem_mib, host [, maker]])
--   explicit = 1: the lease's TTL is the caller's to renew (no claim TTL, no background renewal)
--   gpus > 0: the lease needs that many of `host`'s published GPUs with gpu_mem_mib MiB free on each
--   maker: the token name that asked (for who may see its events; '' none)
--   -> {'G', lid, fence, expiry, devices csv, uuids csv} | {'W'} | {'F', waiting} | {'U'} | {'E'}
--      | {'N', why} (no set of that host's devices could ever hold it)
redis.register_function('sd_acquire', function(keys, args)
  local P = keys[1]
  if not epoch_ok(P, args[1]) then return {'E'} end
  local now = now_ms()
  local proc, name, wid = args[2], args[4], args[5]
  beat(P, proc, tonumber(args[3]), now)
  -- idempotent: a call retried after a lost reply gets the same answer
  local prior = redis.call('GET', P .. ':g:' .. wid)
  if prior then
    local lk = P .. ':l:' .. prior
    local l = redis.call('HMGET', lk, 'f', 'm', 'lm')
    local exp = redis.call('ZSCORE', qk(P, name, 'hold'), prior)
    if l[1] and exp then
      if l[2] then  -- pushed to the inbox while the reply to the first try was lost: claimed by this reply
        redis.call('HDEL', lk, 'm')
        exp = now + tonumber(l[3])
        redis.call('ZADD', qk(P, name, 'hold'), exp, prior)
      end
      local d = redis.call('HMGET', lk, 'd', 'u')
      return {'G', prior, tonumber(l[1]), tonumber(exp), d[1] or '', d[2] or ''}
    end
  end
  if redis.call('EXISTS', P .. ':w:' .. wid) == 1 then return {'W'} end
  local cfgk = qk(P, name, 'cfg')
  if redis.call('EXISTS', cfgk) == 0 then return {'U'} end
  local gpus, gm, H = tonumber(args[11] or '0'), tonumber(args[12] or '0'), args[13]
  local maker = args[14] or ''
  if gpus > 0 then
    local devs = host_devices(P, H)
    local usable = usable_count(devs, 0)
    if usable < gpus then
      local why = 'asked for ' .. gpus .. ' GPU(s), host ' .. H .. ' publishes ' .. usable .. ' usable'
      if #devs == 0 then why = why .. ' (no live GpuPublisher for that host: none runs, or its figures expired)' end
      return {'N', why}
    end
    if usable_count(devs, gm) < gpus then
      return {'N', 'asked for ' .. gpus .. ' GPU(s) with ' .. gm .. ' MiB each on host ' .. H ..
        '; too few devices that large (or of unknown size without a memory budget)'}
    end
  end
  settle(P, name, now)
  local cfg = redis.call('HMGET', cfgk, 'limit', 'paused', 'max_waiting')
  local waiting = redis.call('ZCARD', qk(P, name, 'wait'))
  local in_use = redis.call('ZCARD', qk(P, name, 'hold'))
  local lease_ms = tonumber(args[9])
  local can_now = gpus == 0 and waiting == 0 and cfg[2] ~= '1' and in_use < tonumber(cfg[1]) and rate_allows(cfgk, now, true)
  local maxw = tonumber(cfg[3] or '-1')
  if not can_now and maxw >= 0 and waiting >= maxw then
    bump(P, name, 'rejected')
    ev(P, 'rejected', '', '', name, args[6], maker, 'wn', waiting)
    return {'F', waiting}
  end
  if can_now then  -- nobody waits and a slot is free: grant without queueing
    local expiry = now + lease_ms
    local lid, fence = new_lease(P, name, now, wid, args[6], proc, expiry, lease_ms, maker, 0)
    redis.call('SET', P .. ':g:' .. wid, lid)  -- a retried acquire gets this grant again
    marks(P, name, now)
    return {'G', lid, fence, expiry}
  end
  local seq = redis.call('INCR', P .. ':seq') % TWO32
  local score = (tonumber(args[7]) + PRIO_OFFSET) * TWO32 + seq
  redis.call('HSET', P .. ':w:' .. wid, 'q', name, 'o', args[6], 'p', proc, 't0', fmt(now),
    'lm', args[9], 'x', args[10], 'k', maker)
  if gpus > 0 then
    redis.call('HSET', P .. ':w:' .. wid, 'g', gpus, 'gm', gm, 'h', H)
    redis.call('HINCRBY', P .. ':h:' .. H .. ':gq', name, 1)
    redis.call('SADD', P .. ':gpuhosts', H)
    redis.call('ZADD', qk(P, name, 'gw:' .. H), score, wid)
  end
  redis.call('SADD', P .. ':pw:' .. proc, wid)
  redis.call('ZADD', qk(P, name, 'wait'), score, wid)
  local timeout = tonumber(args[8])
  if timeout == -2 then timeout = tonumber(redis.call('HGET', cfgk, 'timeout_ms') or '-1') end
  if timeout >= 0 then redis.call('ZADD', qk(P, name, 'wdl'), now + timeout, wid) end
  marks(P, name, now)  -- the line's depth with this waiter in it, as the engine notes it
  ev(P, 'waiting', 'w', wid, name, args[6], maker, 'p', args[7])
  local mine = pump(P, name, now, wid)
  if gpus > 0 then
    mine = pump_host(P, H, now, wid) or mine
    pump_hosts(P, now)
  end
  marks(P, name, now)
  if mine then return {'G', mine[1], mine[2], mine[3], mine[4], mine[5]} end
  return {'W'}
end)

-- gpu_publish(P; host, proc, ttl_ms, figures JSON) -> 1 if `proc` is (now) the host's publisher and the
-- figures were written (both for ttl_ms), 0 if another live process publishes for that host
redis.register_function('sd_gpu_publish', function(keys, args)
  local P = keys[1]
  local H, proc, ttl = args[1], args[2], tonumber(args[3])
  local pubk = P .. ':h:' .. H .. ':pub'
  local cur = redis.call('GET', pubk)
  if cur and cur ~= proc then return 0 end
  redis.call('SET', pubk, proc, 'PX', ttl)
  redis.call('SET', P .. ':h:' .. H .. ':figs', args[4], 'PX', ttl)
  redis.call('SADD', P .. ':hosts', H)
  pump_hosts(P, now_ms())
  return 1
end)

-- gpu_resign(P; host, proc) -> 1 if `proc` was the host's publisher: another process of the host may take
-- over at once (the figures stay until their TTL)
redis.register_function('sd_gpu_resign', function(keys, args)
  local pubk = keys[1] .. ':h:' .. args[1] .. ':pub'
  if redis.call('GET', pubk) ~= args[2] then return 0 end
  redis.call('DEL', pubk)
  return 1
end)

-- gpu_view(P) -> JSON {host: {devices: [figures], reserved: {index or 'n'..index: n}, publisher}} for
-- every host that published devices or holds GPU leases
redis.register_function{function_name = 'sd_gpu_view', flags = {'no-writes'}, callback = function(keys, args)
  local P = keys[1]
  local out = {}
  for _, H in ipairs(redis.call('SMEMBERS', P .. ':hosts')) do
    local flat = redis.call('HGETALL', P .. ':h:' .. H .. ':res')
    local res = {}
    for k = 1, #flat, 2 do res[flat[k]] = tonumber(flat[k + 1]) end
    out[H] = {devices = redis.call('GET', P .. ':h:' .. H .. ':figs') or '[]', reserved = res,
      publisher = redis.call('GET', P .. ':h:' .. H .. ':pub') or ''}
  end
  return cjson.encode(out)
end}

-- hosts(P; ttl_ms) -> JSON {now, hosts: {host: {hb: newest heartbeat ms or nil, alive: 0/1, devices: figures JSON,
--   reserved: {index or 'n'..index: n}, publisher}}} for every host with a heartbeat or published GPUs.
-- A host leaves (its records go) once no process of it is alive, its newest heartbeat is older than ttl_ms,
-- its figures expired, and no GPU lease or waiter is on it: leases still held keep their host.
redis.register_function('sd_hosts', function(keys, args)
  local P = keys[1]
  local ttl = tonumber(args[1])
  local now = now_ms()
  local alive = {}
  for _, proc in ipairs(redis.call('ZRANGEBYSCORE', P .. ':procs', '(' .. fmt(now), '+inf')) do
    alive[host_of(proc)] = true
  end
  local names = {}
  for _, H in ipairs(redis.call('HKEYS', P .. ':hb')) do names[H] = true end
  for _, H in ipairs(redis.call('SMEMBERS', P .. ':hosts')) do names[H] = true end
  local out = {}
  for H, _ in pairs(names) do
    local hk = P .. ':h:' .. H
    local hb = tonumber(redis.call('HGET', P .. ':hb', H) or '0')
    local figs = redis.call('GET', hk .. ':figs')
    if not alive[H] and now - hb > ttl and not figs and redis.call('HLEN', hk .. ':res') == 0
      and redis.call('HLEN', hk .. ':gq') == 0 then
      redis.call('DEL', hk .. ':pub', hk .. ':res', hk .. ':pq', hk .. ':gq')
      redis.call('SREM', P .. ':hosts', H)
      redis.call('SREM', P .. ':gpuhosts', H)
      redis.call('HDEL', P .. ':hb', H)
    else
      local flat = redis.call('HGETALL', hk .. ':res')
      local res = {}
      for k = 1, #flat, 2 do res[flat[k]] = tonumber(flat[k + 1]) end
      out[H] = {hb = hb, alive = alive[H] and 1 or 0, devices = figs or '[]', reserved = res,
        publisher = redis.call('GET', hk .. ':pub') or ''}
    end
  end
  return cjson.encode({now = fmt(now), hosts = out})
end)

-- cancel(P; name, wid, why) -> 1 if the waiter was still waiting (now removed), else 0.
-- why: timed_out | cancelled
redis.register_function('sd_cancel', function(keys, args)
  local P = keys[1]
  local name, wid = args[1], args[2]
  local now = now_ms()
  if not redis.call('ZSCORE', qk(P, name, 'wait'), wid) then
    settle(P, name, now)
    return 0
  end
  waiter_ev(P, args[3], wid, now, args[3] == 'timed_out')
  drop_waiter(P, name, wid)
  bump(P, name, args[3])
  settle(P, name, now)
  return 1
end)

-- renew(P; epoch, proc, proc_ms, lease_ms, lid...) -> {'E'} | {1|0 per lid} (0: gone)
-- Also how a process claims a grant pushed to its inbox.
redis.register_function('sd_renew', function(keys, args)
  local P = keys[1]
  if not epoch_ok(P, args[1]) then return {'E'} end
  local now = now_ms()
  beat(P, args[2], tonumber(args[3]), now)
  local lease_ms = tonumber(args[4])
  local out = {}
  for i = 5, #args do
    local lid = args[i]
    local name = redis.call('HGET', P .. ':l:' .. lid, 'q')
    local ok = 0
    if name then
      local hold = qk(P, name, 'hold')
      local exp = tonumber(redis.call('ZSCORE', hold, lid))
      if exp and (exp > now or claimed_late(P, name, lid, now)) then
        redis.call('ZADD', hold, now + lease_ms, lid)
        redis.call('HDEL', P .. ':l:' .. lid, 'm')
        ok = 1
      end
    end
    out[#out + 1] = ok
  end
  return out
end)

-- release(P; lid, queue, counted(0/1)) -> 1 if it was held, 0 if already gone (idempotent).
-- counted = 1: the caller's own first try, so a lease already gone (released before, expired,
-- revoked) counts as a bad release of `queue`, as in-process; retries after a lost reply send 0.
redis.register_function('sd_release', function(keys, args)
  local P = keys[1]
  local lid = args[1]
  local now = now_ms()
  local name = redis.call('HGET', P .. ':l:' .. lid, 'q')
  if not name then
    if args[3] == '1' and redis.call('EXISTS', qk(P, args[2], 'cfg')) == 1 then bump(P, args[2], 'bad_releases') end
    return 0
  end
  local gone = redis.call('ZREM', qk(P, name, 'hold'), lid)
  if gone == 1 then lease_ev(P, 'released', lid, now, true) end
  drop_lease(P, lid)
  if gone == 1 then bump(P, name, 'released') end
  settle(P, name, now)
  return gone
end)

-- Take a slot from its holder (counted as revoked) and tell its process why; false if not held.
local function take_lease(P, lid, reason, now)
  local l = redis.call('HMGET', P .. ':l:' .. lid, 'q', 'p')
  if not l[1] then return false end
  redis.call('ZREM', qk(P, l[1], 'hold'), lid)
  lease_ev(P, 'revoked', lid, now, true)
  drop_lease(P, lid)
  bump(P, l[1], 'revoked')
  push(P, l[2], {t = 'x', l = lid, r = reason})
  settle(P, l[1], now)
  return true
end

-- revoke(P; lid, reason) -> 1 if it was held (its process is told), else 0
redis.register_function('sd_revoke', function(keys, args)
  if take_lease(keys[1], args[1], args[2], now_ms()) then return 1 end
  return 0
end)

-- cancel_item(P; id) -> 1 if it was a waiter (its acquire raises SlotCancelled) or a holder (its
-- slot comes back now, counted as cancelled and revoked, and its process is told), else 0
redis.register_function('sd_cancel_item', function(keys, args)
  local P = keys[1]
  local id = args[1]
  local now = now_ms()
  local name = redis.call('HGET', P .. ':w:' .. id, 'q')
  if name then
    waiter_ev(P, 'cancelled', id, now, false)
    local proc = drop_waiter(P, name, id)
    bump(P, name, 'cancelled')
    push(P, proc, {t = 'c', w = id})
    settle(P, name, now)
    return 1
  end
  name = redis.call('HGET', P .. ':l:' .. id, 'q')
  if not name then return 0 end
  bump(P, name, 'cancelled')
  lease_ev(P, 'cancelled', id, now, false)
  take_lease(P, id, 'cancelled', now)
  return 1
end)

-- tick(P; epoch, proc, proc_ms, gate_ms, name...) -> {'E'} | {ms until the next due event}
-- The heartbeat of a process: refreshes its liveness, settles the named queues, and (at most once
-- per gate_ms across the whole deployment) every queue.
redis.register_function('sd_tick', function(keys, args)
  local P = keys[1]
  if not epoch_ok(P, args[1]) then return {'E'} end
  local now = now_ms()
  beat(P, args[2], tonumber(args[3]), now)
  beat_host(P, args[2], now)
  local names = {}
  for i = 5, #args do names[args[i]] = true end
  if redis.call('SET', P .. ':tick', '1', 'PX', tonumber(args[4]), 'NX') then
    for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do names[q] = true end
  end
  local due = 1000000
  for q, _ in pairs(names) do
    settle(P, q, now)
    for _, part in ipairs({'hold', 'wdl'}) do
      local first = redis.call('ZRANGE', qk(P, q, part), 0, 0, 'WITHSCORES')
      if #first == 2 then due = math.min(due, tonumber(first[2]) - now) end
    end
    if redis.call('ZCARD', qk(P, q, 'wait')) > 0 then
      local r = rate_due(qk(P, q, 'cfg'), now)
      if r then due = math.min(due, math.ceil(r)) end
    end
  end
  local p = redis.call('ZRANGE', P .. ':procs', 0, 0, 'WITHSCORES')
  if #p == 2 then due = math.min(due, tonumber(p[2]) - now) end
  if due < 0 then due = 0 end
  return {due}
end)

-- bye(P; proc) -> 1: a closing process leaves (its waiters and inbox go)
redis.register_function('sd_bye', function(keys, args)
  local P = keys[1]
  local proc = args[1]
  local now = now_ms()
  for _, wid in ipairs(redis.call('SMEMBERS', P .. ':pw:' .. proc)) do
    local name = redis.call('HGET', P .. ':w:' .. wid, 'q')
    if name then
      waiter_ev(P, 'cancelled', wid, now, false)
      drop_waiter(P, name, wid)
      bump(P, name, 'cancelled')
      settle(P, name, now)
    end
  end
  redis.call('DEL', P .. ':pw:' .. proc, P .. ':in:' .. proc)
  redis.call('ZREM', P .. ':procs', proc)
  host_left(P, host_of(proc))
  return 1
end)

-- snapshot(P) -> JSON {now_ms, queues: {name: {...}}}
redis.register_function{function_name = 'sd_snapshot', flags = {'no-writes'}, callback = function(keys, args)
  local P = keys[1]
  local out = {}
  for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
    local cfg = redis.call('HMGET', qk(P, q, 'cfg'), 'limit', 'paused', 'max_waiting', 'rate', 'burst', 'pg', 'pl')
    local st = redis.call('HGETALL', qk(P, q, 'st'))
    local stats = {}
    for i = 1, #st, 2 do stats[st[i]] = st[i + 1] end
    out[q] = {
      limit = cfg[1], paused = cfg[2], max_waiting = cfg[3], rate = cfg[4], burst = cfg[5], per_gpu = cfg[6],
      placement = cfg[7],
      in_use = redis.call('ZCARD', qk(P, q, 'hold')),
      waiting = redis.call('ZCARD', qk(P, q, 'wait')),
      stats = stats,
    }
  end
  return cjson.encode({queues = out, now = fmt(now_ms())})
end}

-- detail(P; name, max) -> JSON {holders: [[lid, owner, fence, expiry_ms, process]] by fence,
--   waiters: [[wid, owner, priority, enqueued_ms, process]] in grant order}, at most `max` of each
--   (a holder's further fields: its grant time in ms, and for a GPU lease its host, devices csv and MiB per GPU;
--   a waiter's: GPUs, MiB per GPU and host of a GPU request)
redis.register_function{function_name = 'sd_detail', flags = {'no-writes'}, callback = function(keys, args)
  local P = keys[1]
  local name = args[1]
  local max = tonumber(args[2])
  local holders = {}
  local hold = redis.call('ZRANGE', qk(P, name, 'hold'), 0, -1, 'WITHSCORES')
  for i = 1, #hold, 2 do
    local l = redis.call('HMGET', P .. ':l:' .. hold[i], 'o', 'f', 'p', 't0', 'h', 'd', 'gm')
    -- the fence as its string: cjson writes numbers with 14 digits, fences have 16
    holders[#holders + 1] = {hold[i], l[1], l[2], tonumber(hold[i + 1]), l[3], tonumber(l[4]) or false,
      l[5], l[6], tonumber(l[7]) or 0}
  end
  table.sort(holders, function(a, b) return a[3] < b[3] end)
  while #holders > max do table.remove(holders) end
  local waiters = {}
  local wait = redis.call('ZRANGE', qk(P, name, 'wait'), 0, max - 1, 'WITHSCORES')
  for i = 1, #wait, 2 do
    local w = redis.call('HMGET', P .. ':w:' .. wait[i], 'o', 't0', 'p', 'g', 'gm', 'h')
    local prio = math.floor(tonumber(wait[i + 1]) / TWO32) - PRIO_OFFSET
    waiters[#waiters + 1] = {wait[i], w[1], prio, tonumber(w[2]), w[3], tonumber(w[4]) or 0, tonumber(w[5]) or 0, w[6]}
  end
  return cjson.encode({holders = holders, waiters = waiters})
end}

-- lead(P; proc, ttl_ms) -> 2 if `proc` became the history writer now, 1 if it still is (renewed), 0 if another is
-- (or, with ttl_ms 0, `proc` resigns: another takes over at once)
redis.register_function('sd_lead', function(keys, args)
  local k = keys[1] .. ':hist:lead'
  local cur = redis.call('GET', k)
  if args[2] == '0' then
    if cur == args[1] then redis.call('DEL', k) end
    return 0
  end
  if cur == args[1] then
    redis.call('PEXPIRE', k, tonumber(args[2]))
    return 1
  end
  if cur then return 0 end
  redis.call('SET', k, args[1], 'PX', tonumber(args[2]))
  return 2
end)

-- hist_add(P; proc, max_points, point JSON object without n and t) -> the point's number, or 0 when `proc`
-- is not the writer (any more). The point gets n (P:hist:seq) and t (Redis time, s); the oldest points beyond
-- max_points are folded into P:hist:base (a full point, f = 1, replaces it).
redis.register_function('sd_hist_add', function(keys, args)
  local P = keys[1]
  if redis.call('GET', P .. ':hist:lead') ~= args[1] then return 0 end
  local n = redis.call('INCR', P .. ':hist:seq')
  local t = redis.call('TIME')
  local stamp = '{"n":' .. n .. ',"t":' .. t[1] .. '.' .. string.format('%06d', tonumber(t[2])) .. ','
  local pts = P .. ':hist:pts'
  local base = P .. ':hist:base'
  redis.call('RPUSH', pts, stamp .. string.sub(args[3], 2))
  local over = redis.call('LLEN', pts) - tonumber(args[2])
  for _ = 1, over do
    local old = cjson.decode(redis.call('LPOP', pts))
    if old.f == 1 then redis.call('DEL', base) end
    for name, v in pairs(old.c or {}) do
      if v == cjson.null then redis.call('HDEL', base, name) else redis.call('HSET', base, name, cjson.encode(v)) end
    end
  end
  return n
end)
"""
