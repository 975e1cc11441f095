"""Multi-process runs through faults: a TCP proxy between the workers and Redis that delays, stalls
past the lease TTL and resets connections; Redis kill -9 mid-run with and without persistence. In
every run (proofs.check_run): each acquire ends exactly once, bodies never above the limit, fences
unique and increasing, FIFO within a priority; and nothing is left in Redis once all have closed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from proofs import check_run, leftover_keys, read_events
from redisproc import PrivateRedis

from embedded_service.cluster import ClusterSlots
from tests.faults.proxy import FaultProxy

WORKER = Path(__file__).with_name("mp_worker.py")


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=dict(os.environ))


async def granted(slots: ClusterSlots) -> int:
    return int((await slots.snapshot())["queues"]["q"]["totals"]["granted"])


async def until_granted(slots: ClusterSlots, n: int, procs: list[subprocess.Popen[bytes]], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while await granted(slots) < n:
        assert time.monotonic() < deadline, "the run stalled"
        assert any(p.poll() is None for p in procs), "the workers ended early"
        await asyncio.sleep(0.02)


async def until_joined(logs: list[Path], procs: list[subprocess.Popen[bytes]]) -> None:
    """Every worker opened and began (one that cannot reach Redis at its start fails fast, by design)."""
    deadline = time.monotonic() + 120
    while not all(log.exists() and log.stat().st_size for log in logs):
        assert time.monotonic() < deadline and all(p.poll() in (None, 0) for p in procs), "workers did not start"
        await asyncio.sleep(0.02)


async def wait_all(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    try:
        return [await asyncio.to_thread(p.wait, 180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


async def silence_with_a_holder(slots: ClusterSlots, proxy: FaultProxy, procs: list[subprocess.Popen[bytes]]) -> int:
    """Make the path silent at a moment Redis shows a slot held through it (a loaded machine can catch the
    workers between bodies); the grants so far."""
    for _ in range(100):
        stalled_at = await granted(slots)
        proxy.silent()
        await asyncio.sleep(0.05)  # what was in flight lands (or is held by the proxy)
        if (await slots.snapshot())["queues"]["q"]["in_use"]:
            return stalled_at
        proxy.heal()
        await until_granted(slots, stalled_at + 1, procs)
    raise AssertionError("no slot was held when the path went silent, in 100 tries")


@pytest.mark.timeout(300)
async def test_proxy_delays_stalls_past_the_ttl_and_resets(redis_server: PrivateRedis, tmp_path: Path) -> None:
    n_proc, n_tasks, rounds, limit, ttl = 4, 3, 8, 2, 2.0
    proxy = FaultProxy(redis_server.port).start()
    direct = redis_server.url("px")
    via_proxy = f"redis://127.0.0.1:{proxy.port}/0?namespace=px"
    try:
        async with ClusterSlots(direct) as ctl:
            await ctl.configure_queue("q", limit=limit)
            logs = [tmp_path / f"w{i}.log" for i in range(n_proc)]
            procs = [spawn("churn", via_proxy, str(log), str(n_tasks), str(rounds), str(ttl)) for log in logs]
            await until_joined(logs, procs)
            await until_granted(ctl, 10, procs)
            proxy.delay(0.005)  # every chunk 5 ms late, both ways
            await until_granted(ctl, 25, procs)
            proxy.heal()
            stalled_at = await silence_with_a_holder(ctl, proxy, procs)
            # longer than a lease TTL from its last renewal plus the reaper's tick (1 s), with room for load
            await asyncio.sleep(ttl * 1.5 + 2.0)
            snap = (await ctl.snapshot())["queues"]["q"]
            assert snap["in_use"] <= limit
            proxy.heal()
            await until_granted(ctl, stalled_at + 10, procs)
            before_reset = proxy.connections
            proxy.reset()  # every connection gets an RST
            codes = await wait_all(procs)
            assert codes == [0] * n_proc
            assert proxy.connections > before_reset  # they reconnected
            snap = (await ctl.snapshot())["queues"]["q"]
        events = read_events(logs)
        intervals = check_run(events, limit=limit, expected=n_proc * n_tasks * rounds)
        failed = [e for e in events if e["e"] == "end" and not e["ok"]]
        # a grant that reached a stalled process after its lease ran out is never entered
        assert all(e["err"].startswith("lost:") for e in failed), failed
        assert len(intervals) + len(failed) == n_proc * n_tasks * rounds
        assert snap["in_use"] == 0 and snap["waiting"] == 0 and snap["marks"]["in_use"] <= limit
        # the stall outlasted the leases of the holders it caught: Redis took them back, or their
        # process counted them lost first (a grant that arrived after its lease ran out)
        assert snap["totals"]["expired"] + len(failed) >= 1
        assert await leftover_keys(direct) == set()
    finally:
        proxy.stop()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("aof", [True, False], ids=["aof", "no-persistence"])
async def test_redis_kill9_mid_run(tmp_path: Path, aof: bool) -> None:
    n_proc, n_tasks, rounds, limit = 4, 3, 8, 2
    server = PrivateRedis(tmp_path, aof=aof)
    server.start()
    url = server.url("k9")
    try:
        async with ClusterSlots(url, lease_ttl_s=3) as ctl:
            await ctl.configure_queue("q", limit=limit)
            logs = [tmp_path / f"w{i}.log" for i in range(n_proc)]
            procs = [spawn("churn", url, str(log), str(n_tasks), str(rounds), "3") for log in logs]
            await until_joined(logs, procs)
            await until_granted(ctl, 20, procs)
            fence_before = int(await ctl._r.get("{sd:k9}:fence"))  # type: ignore[union-attr]
            server.kill9()
            await asyncio.sleep(0.3)
            server.start()  # same port and directory: with AOF the data comes back
            codes = await wait_all(procs)
            assert codes == [0] * n_proc
            snap = (await ctl.snapshot())["queues"]["q"]
            losses = ctl.data_losses
        events = read_events(logs)
        total = n_proc * n_tasks * rounds
        if aof:
            intervals = check_run(events, limit=limit, expected=total)
            assert losses == 0
            assert all(e["ok"] for e in events if e["e"] == "end") and len(intervals) == total
            # a grant whose message a kill cut off expires unclaimed and its acquire waits again
            assert snap["totals"]["released"] == total
            assert snap["totals"]["granted"] == total + snap["totals"]["expired"]
        else:
            # Holders of the lost epoch learn it at their next renewal; their bodies are short, so
            # bodies still never overlap beyond the limit. Fences never repeat across the loss.
            intervals = check_run(events, limit=limit, expected=total)
            assert losses == 1
            after = [f for _, _, f in intervals if f > fence_before]
            assert after and min(after) > fence_before
        assert snap["in_use"] == 0 and snap["waiting"] == 0
        assert await leftover_keys(url) == set()
    finally:
        server.stop()


@pytest.mark.timeout(300)
async def test_sigkill_of_a_worker_mid_run(redis_server: PrivateRedis, tmp_path: Path) -> None:
    """One of four busy workers is SIGKILLed while it holds or waits: the others finish (its slots come
    back within the lease or claim TTL), the run keeps every promise, and Redis is left clean once
    its heartbeat lapses."""
    n_proc, n_tasks, rounds, limit = 4, 3, 8, 2
    url = redis_server.url("kill")
    async with ClusterSlots(url) as ctl:
        await ctl.configure_queue("q", limit=limit)
        logs = [tmp_path / f"w{i}.log" for i in range(n_proc)]
        procs = [spawn("churn", url, str(log), str(n_tasks), str(rounds), "2") for log in logs]
        await until_joined(logs, procs)
        await until_granted(ctl, 15, procs)
        procs[0].kill()
        killed_at = time.monotonic()
        codes = await wait_all(procs[1:])
        procs[0].wait(10)
        assert codes == [0] * (n_proc - 1)
        # the victim's waiters and heartbeat go after its process TTL (10 s): the ticks reap it
        deadline = time.monotonic() + 60
        while await ctl._r.zcard(f"{ctl._P}:procs") > 1:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        snap = (await ctl.snapshot())["queues"]["q"]
    survivors = read_events(logs[1:])
    check_run(survivors, limit=limit, expected=(n_proc - 1) * n_tasks * rounds)
    assert all(e["ok"] for e in survivors if e["e"] == "end")
    # with the victim's bodies (one cut by the kill ends at the kill): still never above the limit
    victim = read_events(logs[:1])
    seen = {(e["e"], e["k"]) for e in victim}
    cut = [
        {"t": killed_at, "e": "leave", "k": e["k"], "f": e["f"]}
        for e in victim
        if e["e"] == "enter" and ("leave", e["k"]) not in seen
    ]
    closed = [
        {"t": killed_at, "e": "end", "k": e["k"], "ok": False}
        for e in victim
        if e["e"] == "start" and ("end", e["k"]) not in seen
    ]
    check_run(survivors + victim + cut + closed, limit=limit)
    assert snap["in_use"] == 0 and snap["waiting"] == 0
    assert await leftover_keys(url) == set()


async def test_a_waiter_taken_for_dead_during_a_silence_waits_again(redis_server: PrivateRedis) -> None:
    """A process whose network went silent longer than its heartbeat TTL lost its waiters in Redis
    (reaped as dead, without a word); once it is heard again they are back in line and get the slot."""
    proxy = FaultProxy(redis_server.port).start()
    url = redis_server.url("reap")
    try:
        async with (
            ClusterSlots(url) as holder,
            ClusterSlots(f"redis://127.0.0.1:{proxy.port}/0?namespace=reap", proc_ttl_s=1.5, socket_timeout_s=10) as far,
        ):
            await holder.configure_queue("q", limit=1)
            held = await holder.acquire("q")
            waiting = asyncio.create_task(far.acquire("q", timeout_s=60))
            deadline = time.monotonic() + 20
            while (await holder.snapshot())["queues"]["q"]["waiting"] < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            proxy.silent()
            while (await holder.snapshot())["queues"]["q"]["totals"]["abandoned"] < 1:  # reaped by holder's ticks
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            proxy.heal()
            await holder.release(held)
            lease = await asyncio.wait_for(waiting, 30)
            assert lease.fence > held.fence and not lease.lost
            await far.release(lease)
    finally:
        proxy.stop()
