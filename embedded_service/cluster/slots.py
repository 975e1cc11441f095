"""ClusterSlots: one admission domain shared by every process that opens the same Redis + namespace.

Usage (asyncio)::

    async with ClusterSlots("redis://127.0.0.1:6379/0?namespace=x") as slots:
        await slots.configure_queue("llm", limit=10)
        async with slots.slot("llm", owner="worker-3", priority=0, timeout_s=30) as lease:
            ...  # lease.fence: int, strictly increasing across the deployment; lease.lost: bool

Each process keeps three background tasks: an inbox reader (one blocking-pop connection that
receives grants pushed by the Redis functions; popping a grant claims it), a ticker (the process
heartbeat, which also reclaims expired holders and timed-out waiters at the next due time) and a
renewer (one call renews every lease this process holds without an explicit TTL). Errors are the
in-process engine's: ``UnknownQueue``, ``QueueFull``, ``SlotTimeout``, ``SlotCancelled`` (an
operator's ``cancel`` of a waiter), ``LeaseLost`` (``renew`` of a lease that is gone); a paused
queue makes acquirers wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

try:
    import redis.asyncio as aredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("cluster mode needs the redis extra: pip install 'slotdeck[redis]'") from exc

from embedded_service.cluster.library import LIBRARY
from embedded_service.cluster.url import check_host_id, default_host_id, parse_cluster_url
from embedded_service.errors import (
    LeaseLost,
    NoFittingDevice,
    QueueFull,
    SlotCancelled,
    SlotDeckError,
    SlotTimeout,
    UnknownQueue,
)

if TYPE_CHECKING:
    from embedded_service.cluster.blocking import BlockingClusterSlots

_NET_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisNotSafe(SlotDeckError):
    """The Redis server cannot hold admission state safely (evicting policy, or older than 7)."""


@dataclass
class ClusterLease:
    """A held slot. ``fence`` never repeats in a deployment, even across Redis data loss.

    ``lost`` turns True (with ``lost_reason``: "expired", "revoked: ...", "cancelled", "redis data lost",
    "no renewal confirmed in time") when this process learns the slot is no longer its own; the body
    is never interrupted, check it or call ``raise_if_lost()`` before side effects that need the slot.
    ``ttl_s``: the explicit TTL its holder renews with ``renew()`` (None: renewed in the background).
    ``queued_at``: ``time.monotonic()`` once Redis had this acquire in line (None: granted at once).
    ``valid_until``: ``time.monotonic()`` by which a renewal must be confirmed, else it counts as lost
    (the last confirmed call's send time + TTL - margin: Redis cannot have expired it before).
    ``host``, ``devices``, ``device_uuids``: for a GPU lease, the host id and the indices (and UUIDs, empty
    when one is unknown) of its GPUs there; ``cuda_visible_devices`` is the value for that variable.
    """

    lease_id: str
    queue: str
    owner: str
    fence: int
    granted_at: float = field(default_factory=time.monotonic)
    lost: bool = False
    lost_reason: str | None = None
    released: bool = False
    ttl_s: float | None = None
    queued_at: float | None = None
    valid_until: float = float("inf")
    host: str | None = None
    devices: tuple[int, ...] = ()
    device_uuids: tuple[str, ...] = ()

    @property
    def cuda_visible_devices(self) -> str:
        """UUIDs when all are known (they survive renumbering), else indices; "" for a lease without GPUs."""
        return ",".join(self.device_uuids) if self.device_uuids else ",".join(map(str, self.devices))

    @property
    def id(self) -> str:
        """The lease id (``lease_id``), as an in-process `Lease` names it."""
        return self.lease_id

    def raise_if_lost(self) -> None:
        if self.lost:
            raise LeaseLost(self.lease_id, self.lost_reason or "lost", self.queue)


class ClusterSlots:
    """Queues with a limit shared by every process on one Redis (7+) and namespace.

    An acquire keeps trying an unreachable Redis within its ``timeout_s`` (without one, for
    ``UNREACHABLE_WAIT_S``), then raises redis-py's ConnectionError or TimeoutError.

    Times in seconds. ``lease_ttl_s``: a holder's slot returns this long after its process stops
    renewing; ``claim_ttl_s``: a grant pushed to a process that does not claim it returns after
    this long; ``proc_ttl_s``: a process's waiters are dropped this long after its last heartbeat.
    Raises ``RedisNotSafe`` from ``open()`` on a Redis whose ``maxmemory-policy`` is not ``noeviction``.
    ``host_id``: this host's name for GPU admission and in the process id (default: ``SLOTDECK_HOST_ID``
    from the environment, else the hostname; 1-200 characters without ``:`` or whitespace, else ValueError);
    GPU requests fit on the devices its publisher (``cluster.gpus.GpuPublisher``) announces. Processes that
    share GPUs must name the same host; different machines (or containers with their own GPUs) must not.
    """

    UNREACHABLE_WAIT_S = 60.0
    REPUBLISH_WAIT_S = 10.0  # after a data loss, an acquire of a queue not yet republished waits this long

    def __init__(
        self,
        url: str,
        *,
        lease_ttl_s: float = 30.0,
        claim_ttl_s: float = 5.0,
        proc_ttl_s: float = 10.0,
        tick_s: float = 1.0,
        socket_timeout_s: float = 5.0,
        host_id: str | None = None,
    ) -> None:
        parsed = parse_cluster_url(url)
        self.host_id = check_host_id(host_id or default_host_id())
        self.namespace = parsed.namespace
        self._P = parsed.prefix
        self._where = parsed
        self._lease_ms = int(lease_ttl_s * 1000)
        self._claim_ms = int(claim_ttl_s * 1000)
        self._proc_ms = int(proc_ttl_s * 1000)
        self._tick_s = tick_s
        self._renew_s = max(0.05, lease_ttl_s / 3)
        self._block_s = 1
        self._sock_s = socket_timeout_s
        self.proc_id = f"{self.host_id}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._inbox = f"{self._P}:in:{self.proc_id}"
        self._epoch = ""
        self._max_fence = 0
        self._configs: dict[str, tuple[Any, ...]] = {}
        self._waiters: dict[str, tuple[asyncio.Future[dict[str, Any]], str]] = {}
        self._leases: dict[str, ClusterLease] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._tick_wake = asyncio.Event()
        self._recover_lock = asyncio.Lock()
        self._r: aredis.Redis | None = None
        self._rb: aredis.Redis | None = None
        self.data_losses = 0
        self._lost_at = -float("inf")
        self._closing = False

    # ---- life cycle ---------------------------------------------------------------------------

    async def open(self) -> ClusterSlots:
        """Connect, check the server, load the functions, join the deployment, start the tasks."""
        common: dict[str, Any] = {"decode_responses": True, "socket_connect_timeout": self._sock_s}
        self._r = self._where.connect(socket_timeout=self._sock_s, health_check_interval=10, **common)
        self._rb = self._where.connect(
            socket_timeout=self._block_s + self._sock_s, health_check_interval=10, max_connections=2, **common
        )
        try:
            info = await self._r.info()
            policy = info.get("maxmemory_policy")
            if policy != "noeviction":
                raise RedisNotSafe(
                    f"Redis uses maxmemory-policy {policy!r}; cluster mode needs 'noeviction' "
                    "(an evicted key would free or duplicate slots): CONFIG SET maxmemory-policy noeviction"
                )
            major = int(str(info.get("redis_version", "0")).split(".")[0])
            if major < 7:
                raise RedisNotSafe(f"Redis {info.get('redis_version')} is too old: cluster mode needs Redis 7+")
            await self._load()
            await self._init()
        except BaseException:
            await self._close_clients()
            raise
        self._tasks = [
            asyncio.create_task(self._reader(), name="slotdeck-cluster-inbox"),
            asyncio.create_task(self._ticker(), name="slotdeck-cluster-tick"),
            asyncio.create_task(self._renewer(), name="slotdeck-cluster-renew"),
        ]
        return self

    async def close(self) -> None:
        """Release this process's leases, drop its waiters, stop the tasks. Idempotent."""
        if self._r is None:
            return
        # The reader leaves by itself after its current blocking pop (at most ~1 s): cancelling a
        # blocking read inside redis-py can hang; the other tasks are cancelled.
        self._closing = True
        with contextlib.suppress(*_NET_ERRORS, ResponseError):
            await self._r.rpush(self._inbox, '{"t": "q"}')  # wakes our reader's blocking pop
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=self._block_s + 2)
        self._tasks[0].cancel()
        await asyncio.wait(self._tasks, timeout=1)
        self._tasks = []
        with contextlib.suppress(*_NET_ERRORS, ResponseError):
            for lease in list(self._leases.values()):
                await self.release(lease)
            await self._fcall("sd_bye", self.proc_id)
        for fut, _ in self._waiters.values():
            if not fut.done():
                fut.set_exception(SlotDeckError("cluster slots closed"))
        await self._close_clients()

    async def _close_clients(self) -> None:
        for client in (self._r, self._rb):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._r = self._rb = None

    async def __aenter__(self) -> ClusterSlots:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @classmethod
    def blocking(cls, url: str, **kwargs: Any) -> BlockingClusterSlots:
        """The same domain for threads and Celery tasks: see ``BlockingClusterSlots``."""
        from embedded_service.cluster.blocking import BlockingClusterSlots

        return BlockingClusterSlots(url, **kwargs)

    # ---- calls ----------------------------------------------------------------------------------

    async def _load(self) -> None:
        assert self._r is not None
        await self._r.execute_command("FUNCTION", "LOAD", "REPLACE", LIBRARY)

    async def _fcall(self, fn: str, *args: Any, retry_until: float | None = None) -> Any:
        """Call a library function (all are idempotent); reload the library if Redis lost it; retry
        network errors with backoff (50 ms doubling to 1 s) five times, or until ``retry_until``
        (``time.monotonic()``) when given. Raises SlotDeckError once closed."""
        delay = 0.05
        reloads = failures = 0
        while True:
            if self._r is None:
                raise SlotDeckError("cluster slots are closed")
            try:
                return await self._r.fcall(fn, 1, self._P, *args)
            except ResponseError as exc:
                if "function not found" not in str(exc).lower() or reloads >= 2:
                    raise
                reloads += 1
                with contextlib.suppress(*_NET_ERRORS):
                    await self._load()
            except _NET_ERRORS:
                failures += 1
                if failures > 5 if retry_until is None else time.monotonic() + delay > retry_until:
                    raise
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)

    async def _init(self) -> None:
        res = await self._fcall("sd_init", uuid.uuid4().hex, self._max_fence, self.proc_id, self._proc_ms, self._claim_ms)
        self._epoch = res[0]

    async def _recover(self) -> None:
        """Redis lost our epoch (data loss): leases are gone, fences resume above the highest seen,
        the queues this process configured are published again, waiters are enqueued again."""
        async with self._recover_lock:
            assert self._r is not None
            if await self._r.get(f"{self._P}:epoch") == self._epoch:
                return
            self.data_losses += 1
            self._lost_at = time.monotonic()
            for lease in list(self._leases.values()):
                self._mark_lost(lease.lease_id, "redis data lost")
            await self._init()
            for args in self._configs.values():
                await self._fcall("sd_configure", *args)
            for fut, _ in self._waiters.values():
                if not fut.done():
                    fut.set_result({"t": "r"})

    # ---- configuration ------------------------------------------------------------------------

    async def configure_queue(
        self,
        name: str,
        *,
        limit: int,
        max_waiting: int | None = None,
        paused: bool | None = None,
        rate: float | None = None,
        burst: int = 1,
        timeout_s: float | None = None,
        per_gpu: int | None = None,
        placement: str = "spread",
    ) -> None:
        """Create or update a queue for the whole deployment (``limit`` >= 0 slots; ``rate``: admissions
        per second with ``burst``, as the in-process engine's token bucket; None: no rate;
        ``timeout_s``: how long an acquire that names no timeout waits, None: without limit;
        ``per_gpu``: at most this many of the queue's leases on one GPU, None: no cap; ``placement``:
        "spread" (emptiest GPU first, the default) or "pack" (best fit), as in-process)."""
        if limit < 0 or (max_waiting is not None and max_waiting < 0):
            raise ValueError("limit and max_waiting must be >= 0")
        if (rate is not None and not 0.001 <= rate <= 1e6) or burst < 1:
            raise ValueError("rate must be within [0.001, 1e6] admissions/s and burst >= 1")
        if timeout_s is not None and not 0 < timeout_s <= 86_400:
            raise ValueError("timeout_s must be within (0, 86400] seconds")
        if (per_gpu is not None and per_gpu < 1) or placement not in ("pack", "spread"):
            raise ValueError("per_gpu must be >= 1 (or None) and placement 'pack' or 'spread'")
        args = (
            name,
            limit,
            -1 if max_waiting is None else max_waiting,
            "" if paused is None else int(paused),
            "" if rate is None else repr(float(rate)),
            burst,
            -1 if timeout_s is None else int(timeout_s * 1000),
            -1 if per_gpu is None else per_gpu,
            placement,
        )
        self._configs[name] = args
        await self._fcall("sd_configure", *args)

    async def _set(self, name: str, fieldname: str, value: int) -> None:
        if not await self._fcall("sd_set", name, fieldname, value):
            raise UnknownQueue(name)

    async def set_limit(self, name: str, limit: int) -> None:
        """Change the limit everywhere at once; raising admits waiters now, lowering never preempts."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        await self._set(name, "limit", limit)

    async def set_max_waiting(self, name: str, max_waiting: int | None) -> None:
        await self._set(name, "max_waiting", -1 if max_waiting is None else max_waiting)

    async def pause(self, name: str) -> None:
        """Stop granting in this queue (acquirers wait; holders keep their slots)."""
        await self._set(name, "paused", 1)

    async def resume(self, name: str) -> None:
        await self._set(name, "paused", 0)

    # ---- acquire / release --------------------------------------------------------------------

    def _valid_for(self, ttl_s: float) -> float:
        """How long after sending a call that granted or renewed a lease it surely still holds."""
        return ttl_s - min(1.0, ttl_s / 10)

    def _adopt(
        self,
        lid: str,
        fence: Any,
        queue: str,
        owner: str,
        sent: float,
        ttl_s: float | None,
        queued_at: float | None,
        gpus: tuple[str, str, str] | None = None,
    ) -> ClusterLease:
        lease = ClusterLease(lid, queue, owner, int(fence), ttl_s=ttl_s, queued_at=queued_at)
        if gpus is not None and gpus[1]:  # (host, "0,2", "GPU-a,GPU-b" or "")
            lease.host = gpus[0]
            lease.devices = tuple(int(i) for i in gpus[1].split(","))
            lease.device_uuids = tuple(gpus[2].split(",")) if gpus[2] else ()
        lease.valid_until = sent + self._valid_for(self._lease_ms / 1000 if ttl_s is None else ttl_s)
        self._max_fence = max(self._max_fence, lease.fence)
        self._leases[lid] = lease
        if time.monotonic() > lease.valid_until:  # the reply came too late: the slot may be someone else's
            self._mark_lost(lid, "no renewal confirmed in time")
        return lease

    async def acquire(
        self,
        queue: str,
        *,
        owner: str = "",
        priority: int = 0,
        timeout_s: float | None = None,
        ttl_s: float | None = None,
        gpus: int = 0,
        gpu_mem_mib: int = 0,
        host: str | None = None,
        on_queued: Callable[[], object] | None = None,
        maker: str = "",
        waiter_id: str | None = None,
    ) -> ClusterLease:
        """Wait for a slot; lower ``priority`` first, then arrival order.

        ``gpus``, ``gpu_mem_mib``: the lease also needs that many GPUs of ``host`` (default: this
        process's ``host_id``) with that many MiB free on each (``gpu_mem_mib`` alone means one GPU),
        under the queue's ``per_gpu`` cap and the in-process engine's rules (engine/devices.py: a lease
        is charged what it reserved; the first GPU waiter of a host that does not fit reserves).
        Raises NoFittingDevice at once when no set of that host's published devices could ever hold it.

        ``ttl_s``: the lease expires this long after its grant unless ``renew()`` is called (for a
        holder that renews itself, like a remote lease); None: this process renews it in the
        background and it expires ``lease_ttl_s`` after the process stops.
        ``on_queued``: called once Redis has this acquire in line (not called for a grant at once).
        ``maker``: the API token name that asked (its lease events on the stream reach that client);
        ``waiter_id``: the id its waiter gets in line (default: a new one), e.g. the one an HTTP client was given.
        Raises UnknownQueue, QueueFull (``max_waiting`` reached), SlotTimeout (``timeout_s`` passed),
        SlotCancelled (an operator cancelled this waiter).
        """
        if not -(2**20) <= priority < 2**20:
            raise ValueError("priority must be within [-1048576, 1048575]")
        if ttl_s is not None and not 0.05 <= ttl_s <= 86_400:
            raise ValueError("ttl_s must be within [0.05, 86400] seconds")
        if gpus < 0 or gpu_mem_mib < 0:
            raise ValueError(f"gpus and gpu_mem_mib must be >= 0, not gpus={gpus}, gpu_mem_mib={gpu_mem_mib}")
        if gpu_mem_mib and not gpus:
            gpus = 1
        gpu_host = host or self.host_id
        gpu_args: tuple[Any, ...] = (gpus, gpu_mem_mib, gpu_host) if gpus or maker else ()
        if maker:
            gpu_args += (maker,)
        lease_ms = self._lease_ms if ttl_s is None else int(ttl_s * 1000)
        t0 = time.monotonic()
        # Redis unreachable (restarting, failing over): keep trying within the wait allowed
        retry_until = t0 + (timeout_s if timeout_s is not None else self.UNREACHABLE_WAIT_S)
        wid = waiter_id or uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        while True:
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._waiters[wid] = (fut, queue)
            adopted = False
            try:
                left = None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - t0))
                timeout_ms = -2 if left is None else int(left * 1000)  # -2: the queue's own
                sent = time.monotonic()
                call = asyncio.ensure_future(
                    self._fcall(
                        "sd_acquire",
                        self._epoch,
                        self.proc_id,
                        self._proc_ms,
                        queue,
                        wid,
                        owner,
                        priority,
                        timeout_ms,
                        lease_ms,
                        0 if ttl_s is None else 1,
                        *gpu_args,
                        retry_until=retry_until,
                    )
                )
                try:
                    res = await asyncio.shield(call)
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):
                        res = await asyncio.wait_for(call, self._sock_s)
                        if res[0] == "G":
                            await self._release_id(res[1], queue)
                        elif res[0] == "W":
                            await self._fcall("sd_cancel", queue, wid, "cancelled")
                    raise
                kind = res[0]
                if kind == "G":
                    adopted = True
                    gpu = (gpu_host, res[4], res[5]) if len(res) > 5 else None
                    return self._adopt(res[1], res[2], queue, owner, sent, ttl_s, None, gpu)
                if kind == "N":
                    raise NoFittingDevice(res[1])
                if kind == "U":
                    # after a data loss, queues return once their configuring process republishes them
                    if time.monotonic() - self._lost_at < self.REPUBLISH_WAIT_S and time.monotonic() < retry_until:
                        await asyncio.sleep(0.1)
                        continue
                    raise UnknownQueue(queue)
                if kind == "F":
                    raise QueueFull(queue, int(res[1]))
                if kind == "E":
                    await self._recover()
                    continue
                queued_at = time.monotonic()
                if on_queued is not None:
                    on_queued()
                if left is not None and left < self._tick_s:
                    self._tick_wake.set()  # its deadline comes before the next regular tick
                try:
                    left = None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - t0))
                    msg = await asyncio.wait_for(asyncio.shield(fut), left)
                except TimeoutError:
                    if await self._fcall("sd_cancel", queue, wid, "timed_out", retry_until=time.monotonic() + self._sock_s):
                        raise SlotTimeout(queue, time.monotonic() - t0) from None
                    # Granted (or timed out by Redis) at the same moment: its message is on the way.
                    try:
                        msg = await asyncio.wait_for(asyncio.shield(fut), self._sock_s + self._block_s)
                    except TimeoutError:
                        raise SlotTimeout(queue, time.monotonic() - t0) from None
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._fcall("sd_cancel", queue, wid, "cancelled"))
                    raise
                if msg["t"] == "g":
                    adopted = True
                    gpu = (gpu_host, msg.get("d", ""), msg.get("u", ""))
                    return self._adopt(msg["l"], msg["f"], queue, owner, msg["_sent"], ttl_s, queued_at, gpu)
                if msg["t"] == "t":
                    raise SlotTimeout(queue, time.monotonic() - t0)
                if msg["t"] == "c":
                    raise SlotCancelled(queue)
                # "r": Redis lost its data, or took this process for dead, while we waited: enqueue again.
            finally:
                self._waiters.pop(wid, None)
                if not adopted and fut.done() and not fut.cancelled() and fut.exception() is None:
                    msg = fut.result()
                    if msg.get("t") == "g":
                        self._spawn(self._release_id(msg["l"], queue))

    async def release(self, lease: ClusterLease) -> None:
        """Give the slot back. Never raises for an unreachable Redis: the release is retried in the
        background until the lease would have expired anyway. A lease this process counts as lost is
        released too (Redis may still hold it for a late claim or a stalled renewal). Releasing a
        lease twice, or one that expired or was revoked, changes nothing and counts as a bad release
        (totals ``bad_releases``), as in-process."""
        first = not lease.released
        lease.released = True
        self._leases.pop(lease.lease_id, None)
        try:
            await self._fcall("sd_release", lease.lease_id, lease.queue, 1, retry_until=time.monotonic())
        except (*_NET_ERRORS, SlotDeckError):
            if first:
                until = time.monotonic() + (lease.ttl_s if lease.ttl_s is not None else self._lease_ms / 1000)
                self._spawn(self._release_id(lease.lease_id, lease.queue, until))

    def release_soon(self, lease: ClusterLease) -> bool:
        """``release`` for a caller that cannot await (a synchronous API): the slot goes back in the
        background, retried until the lease would have expired anyway. False if it was released already
        (not told to Redis: its first release may still be on the way, so it is not counted as a bad release)."""
        if lease.released:
            return False
        lease.released = True
        self._leases.pop(lease.lease_id, None)
        until = time.monotonic() + (lease.ttl_s if lease.ttl_s is not None else self._lease_ms / 1000)
        self._spawn(self._release_id(lease.lease_id, lease.queue, until))
        return True

    async def _release_id(self, lid: str, queue: str, retry_until: float | None = None) -> None:
        """Release on this process's own account (a retry, or a grant nobody waits for): never a bad release."""
        await self._fcall("sd_release", lid, queue, 0, retry_until=retry_until)

    async def revoke(self, lease_id: str, reason: str = "revoked by operator") -> bool:
        """Take a slot from its holder (any process); the holder learns it at once via its inbox,
        or at its next renewal. Returns False if that lease was no longer held."""
        return bool(await self._fcall("sd_revoke", lease_id, f"revoked: {reason}"))

    async def cancel(self, item_id: str) -> bool:
        """An operator's cancel, from any process: a waiter (an id from ``detail()``) leaves the line and
        its acquire raises SlotCancelled; a holder's slot comes back now and its process is told
        (``lost_reason`` "cancelled"). Counted as cancelled (a holder also as revoked), as in-process.
        Returns False if the id neither waits nor holds."""
        return bool(await self._fcall("sd_cancel_item", item_id))

    async def renew(self, lease: ClusterLease, ttl_s: float | None = None) -> None:
        """Extend a lease by ``ttl_s`` (default: its own TTL) from now. Raises LeaseLost if it is gone."""
        ttl = ttl_s if ttl_s is not None else lease.ttl_s if lease.ttl_s is not None else self._lease_ms / 1000
        if lease.lost or lease.released:
            raise LeaseLost(lease.lease_id, lease.lost_reason or "released", lease.queue)
        sent = time.monotonic()
        res = await self._fcall("sd_renew", self._epoch, self.proc_id, self._proc_ms, int(ttl * 1000), lease.lease_id)
        if res and res[0] == "E":
            await self._recover()
        elif res and res[0]:
            lease.valid_until = sent + self._valid_for(ttl)
            return
        self._mark_lost(lease.lease_id, lease.lost_reason or "expired or revoked")
        raise LeaseLost(lease.lease_id, lease.lost_reason or "expired or revoked", lease.queue)

    @contextlib.asynccontextmanager
    async def slot(
        self, queue: str, *, owner: str = "", priority: int = 0, timeout_s: float | None = None
    ) -> AsyncIterator[ClusterLease]:
        """``async with slots.slot(...) as lease``: acquire, then release however the body ends."""
        lease = await self.acquire(queue, owner=owner, priority=priority, timeout_s=timeout_s)
        try:
            yield lease
        finally:
            await asyncio.shield(self.release(lease))

    @property
    def prefix(self) -> str:
        """The hash-tagged prefix of every key of this deployment (``{sd:<namespace>}``)."""
        return self._P

    @property
    def client(self) -> aredis.Redis:
        """This process's Redis client (for keys of its own kept beside the deployment's); SlotDeckError once closed."""
        if self._r is None:
            raise SlotDeckError("cluster slots are closed")
        return self._r

    def detach(self, lease: ClusterLease) -> None:
        """Stop tracking a lease whose holder is elsewhere (a remote HTTP holder renews and releases it,
        through any process): this process neither renews it nor releases it at ``close()``."""
        self._leases.pop(lease.lease_id, None)

    # ---- views ----------------------------------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        """``{"queues": {name: {limit, paused, max_waiting, rate, burst, per_gpu, placement, in_use, waiting, marks,
        totals}},
        "redis_time"}``.

        marks: ``{"in_use", "in_use_at", "waiting", "waiting_at"}`` (``*_at``: Unix seconds, Redis clock);
        totals: granted, released, timed_out, rejected (QueueFull), expired, revoked, cancelled,
        abandoned (waiters of dead processes), bad_releases.
        """
        raw = json.loads(await self._fcall("sd_snapshot"))
        queues: dict[str, Any] = {}
        for name, q in raw["queues"].items():
            st = q["stats"]

            def num(key: str, st: dict[str, str] = st) -> int:
                return int(st.get(key, 0))

            maxw = int(q.get("max_waiting") or -1)
            queues[name] = {
                "limit": int(q["limit"]),
                "paused": q.get("paused") == "1",
                "max_waiting": None if maxw < 0 else maxw,
                "rate": float(q["rate"]) if q.get("rate") else None,
                "burst": int(q.get("burst") or 1),
                "per_gpu": None if int(q.get("per_gpu") or -1) < 0 else int(q["per_gpu"]),
                "placement": q.get("placement") or "spread",
                "in_use": int(q["in_use"]),
                "waiting": int(q["waiting"]),
                "marks": {
                    "in_use": num("mark_in_use"),
                    "in_use_at": num("mark_in_use_at") / 1000 or None,
                    "waiting": num("mark_waiting"),
                    "waiting_at": num("mark_waiting_at") / 1000 or None,
                },
                "totals": {
                    k: num(k)
                    for k in (
                        "granted",
                        "released",
                        "timed_out",
                        "rejected",
                        "expired",
                        "revoked",
                        "cancelled",
                        "abandoned",
                        "bad_releases",
                    )
                },
            }
        return {"queues": queues, "redis_time": int(raw["now"]) / 1000}

    async def detail(self, queue: str, limit: int = 1000) -> dict[str, list[dict[str, Any]]]:
        """Who holds and who waits in one queue, at most ``limit`` of each:
        ``{"holders": [{id, owner, fence, expires_at, process, granted_at, host, devices, gpu_mem_mib}] by fence,
        "waiters": [{id, owner, priority, enqueued_at, process, gpus, gpu_mem_mib, host}] in grant order}``
        (times: Unix seconds, Redis clock; ``host`` None and ``devices`` empty for a request without GPUs)."""
        raw = json.loads(await self._fcall("sd_detail", queue, limit))
        return {
            "holders": [
                {
                    "id": h[0],
                    "owner": h[1],
                    "fence": int(h[2]),
                    "expires_at": h[3] / 1000,
                    "process": h[4],
                    "granted_at": h[5] / 1000 if len(h) > 5 and h[5] else None,
                    "host": h[6] if len(h) > 6 and h[6] else None,
                    "devices": [int(i) for i in h[7].split(",")] if len(h) > 7 and h[7] else [],
                    "gpu_mem_mib": int(h[8]) if len(h) > 8 else 0,
                }
                for h in raw["holders"] or []
            ],
            "waiters": [
                {
                    "id": w[0],
                    "owner": w[1],
                    "priority": int(w[2]),
                    "enqueued_at": w[3] / 1000,
                    "process": w[4],
                    "gpus": int(w[5]) if len(w) > 5 else 0,
                    "gpu_mem_mib": int(w[6]) if len(w) > 6 else 0,
                    "host": w[7] if len(w) > 7 and w[7] else None,
                }
                for w in raw["waiters"] or []
            ],
        }

    # ---- background ---------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _mark_lost(self, lid: str, reason: str) -> None:
        lease = self._leases.pop(lid, None)
        if lease is not None and not lease.lost:
            lease.lost = True
            lease.lost_reason = reason

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if kind in ("g", "t", "c"):
            if kind == "g" and msg["l"] in self._leases:
                return  # a retried acquire already took this grant from its reply
            entry = self._waiters.get(msg["w"])
            if entry is not None and not entry[0].done():
                entry[0].set_result(msg)
            elif kind == "g":
                self._spawn(self._release_id(msg["l"], ""))  # nobody waits for it any more
        elif kind == "x":
            self._mark_lost(msg["l"], msg.get("r", "lost"))
            entry = self._waiters.get(msg.get("w") or "")
            if entry is not None and not entry[0].done():
                entry[0].set_result({"t": "r"})  # its grant never reached us and expired: wait again

    async def _reader(self) -> None:
        assert self._rb is not None
        delay = 0.05
        while not self._closing:
            sent = time.monotonic()  # a grant popped by this call was claimed after this instant
            try:
                item = await self._rb.blpop([self._inbox], timeout=self._block_s)
                delay = 0.05
            except _NET_ERRORS:
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)
                continue
            if item is not None:
                self._dispatch({**json.loads(item[1]), "_sent": sent})

    async def _ticker(self) -> None:
        """The heartbeat. After a gap near the process TTL (Redis unreachable, the network silent, the
        process stopped) Redis may have taken this process for dead and dropped its waiters without a
        word: they are enqueued again (an acquire still in line stays where it is; the call is idempotent)."""
        gate_ms = int(self._tick_s * 1000)
        beat_ok = time.monotonic()
        while not self._closing:
            try:
                names = {q for _, q in self._waiters.values()}
                sent = time.monotonic()
                res = await self._fcall("sd_tick", self._epoch, self.proc_id, self._proc_ms, gate_ms, *sorted(names))
                if res[0] == "E":
                    await self._recover()
                    continue
                if time.monotonic() - beat_ok > 0.8 * self._proc_ms / 1000:
                    for fut, _ in self._waiters.values():
                        if not fut.done():
                            fut.set_result({"t": "r"})
                beat_ok = sent
                sleep = min(self._tick_s, max(0.002, int(res[0]) / 1000 + 0.001))
            except (*_NET_ERRORS, ResponseError, SlotDeckError):
                sleep = 0.2
            self._tick_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick_wake.wait(), sleep)

    async def _renewer(self) -> None:
        """Renew this process's background-renewed leases every ``lease_ttl_s / 3``; a lease whose
        renewal is not confirmed by its ``valid_until`` (Redis unreachable, stalled) counts as lost."""
        while not self._closing:
            lids = [lid for lid, lease in self._leases.items() if lease.ttl_s is None]
            pause = self._renew_s
            if lids:
                sent = time.monotonic()
                first_due = min(self._leases[lid].valid_until for lid in lids)
                try:
                    res = await asyncio.wait_for(
                        self._fcall("sd_renew", self._epoch, self.proc_id, self._proc_ms, self._lease_ms, *lids),
                        max(0.05, first_due - sent),
                    )
                    if res and res[0] == "E":
                        await self._recover()
                    else:
                        until = sent + self._valid_for(self._lease_ms / 1000)
                        for lid, ok in zip(lids, res, strict=True):
                            lease = self._leases.get(lid)
                            if not ok:
                                self._mark_lost(lid, "expired or revoked")
                            elif lease is not None:
                                lease.valid_until = max(lease.valid_until, until)
                except (*_NET_ERRORS, ResponseError, SlotDeckError, TimeoutError):
                    pause = 0.2
                now = time.monotonic()
                for lid in lids:
                    lease = self._leases.get(lid)
                    if lease is not None and now > lease.valid_until:
                        self._mark_lost(lid, "no renewal confirmed in time")
            await asyncio.sleep(pause)
