"""ClusterSlots semantics on a private Redis: limit, order, errors, pause, live limits, leases, fences."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aredis
from redisproc import PrivateRedis

from embedded_service.cluster import ClusterSlots, LeaseLost, RedisNotSafe
from embedded_service.cluster.url import parse_cluster_url
from embedded_service.errors import QueueFull, SlotTimeout, UnknownQueue


async def until(cond, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_limit_priority_then_fifo(slots: ClusterSlots, ns_url: str) -> None:
    await slots.configure_queue("q", limit=1)
    first = await slots.acquire("q", owner="holder")
    order: list[str] = []
    async with ClusterSlots(ns_url) as other:

        async def take(name: str, prio: int, s: ClusterSlots) -> None:
            lease = await s.acquire("q", owner=name, priority=prio, timeout_s=60)
            order.append(name)
            await s.release(lease)

        tasks = []
        for name, prio, s in [("a", 5, slots), ("b", 5, other), ("c", 1, other), ("d", 5, slots), ("e", 1, slots)]:
            tasks.append(asyncio.create_task(take(name, prio, s)))
            n = len(tasks)
            await until(lambda n=n: _waiting(slots, n))
        assert (await slots.snapshot())["queues"]["q"]["in_use"] == 1
        await slots.release(first)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert order == ["c", "e", "a", "b", "d"]


async def _waiting(slots: ClusterSlots, n: int) -> bool:
    return (await slots.snapshot())["queues"]["q"]["waiting"] == n


async def test_errors_are_the_engines(slots: ClusterSlots) -> None:
    with pytest.raises(UnknownQueue):
        await slots.acquire("nope")
    await slots.configure_queue("q", limit=1, max_waiting=1)
    held = await slots.acquire("q")
    waiter = asyncio.create_task(slots.acquire("q", timeout_s=60))
    await until(lambda: _waiting(slots, 1))
    with pytest.raises(QueueFull) as full:
        await slots.acquire("q")
    assert full.value.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    with pytest.raises(SlotTimeout) as late:
        await slots.acquire("q", timeout_s=0.3)
    assert late.value.waited_s >= 0.3
    snap = (await slots.snapshot())["queues"]["q"]
    assert snap["waiting"] == 0 and snap["totals"]["timed_out"] == 1 and snap["totals"]["cancelled"] == 1
    await slots.release(held)
    with pytest.raises(UnknownQueue):
        await slots.set_limit("nope", 3)


async def test_pause_waits_resume_admits(slots: ClusterSlots, ns_url: str) -> None:
    await slots.configure_queue("q", limit=2)
    async with ClusterSlots(ns_url) as other:
        await other.pause("q")  # from another process: applies to all
        waiter = asyncio.create_task(slots.acquire("q", timeout_s=60))
        await until(lambda: _waiting(slots, 1))
        with pytest.raises(SlotTimeout):
            await slots.acquire("q", timeout_s=0.2)
        assert not waiter.done()
        await other.resume("q")
        lease = await asyncio.wait_for(waiter, 20)
        await slots.release(lease)


async def test_live_limit_raise_admits_lower_never_preempts(slots: ClusterSlots, ns_url: str) -> None:
    await slots.configure_queue("q", limit=1)
    a = await slots.acquire("q")
    waiters = [asyncio.create_task(slots.acquire("q", timeout_s=60)) for _ in range(2)]
    await until(lambda: _waiting(slots, 2))
    async with ClusterSlots(ns_url) as other:
        await other.set_limit("q", 3)
    got = await asyncio.wait_for(asyncio.gather(*waiters), 20)
    await slots.set_limit("q", 1)
    snap = (await slots.snapshot())["queues"]["q"]
    assert snap["in_use"] == 3 and snap["limit"] == 1
    assert not any(lease.lost for lease in [a, *got])
    await slots.release(a)
    await slots.release(got[0])
    with pytest.raises(SlotTimeout):  # one still held, limit 1: no admission
        await slots.acquire("q", timeout_s=0.2)
    await slots.release(got[1])
    await slots.release(await slots.acquire("q", timeout_s=10))
    assert (await slots.snapshot())["queues"]["q"]["marks"]["in_use"] == 3


async def test_release_idempotent_and_fences_increase(slots: ClusterSlots) -> None:
    await slots.configure_queue("q", limit=1)
    fences = []
    for _ in range(5):
        lease = await slots.acquire("q")
        fences.append(lease.fence)
        await slots.release(lease)
        await slots.release(lease)
    assert fences == sorted(set(fences))
    totals = (await slots.snapshot())["queues"]["q"]["totals"]
    assert totals["granted"] == 5 and totals["released"] == 5


async def test_unrenewed_lease_expires_and_its_holder_learns(ns_url: str) -> None:
    async with ClusterSlots(ns_url, lease_ttl_s=0.6, claim_ttl_s=0.6) as s:
        await s.configure_queue("q", limit=1)
        lease = await s.acquire("q")
        s._renewer_task = None
        for task in s._tasks:
            if task.get_name() == "slotdeck-cluster-renew":
                task.cancel()  # this process stops renewing (as if stalled)
        t0 = time.monotonic()
        nxt = await s.acquire("q", timeout_s=30)
        assert time.monotonic() - t0 >= 0.3
        await until(lambda: _true(lease.lost))
        assert lease.lost_reason == "expired"
        assert (await s.snapshot())["queues"]["q"]["totals"]["expired"] == 1
        await s.release(nxt)


async def _true(v: bool) -> bool:
    return v


async def test_renewal_keeps_a_lease_past_its_ttl(ns_url: str) -> None:
    async with ClusterSlots(ns_url, lease_ttl_s=0.6, claim_ttl_s=0.6) as s:
        await s.configure_queue("q", limit=1)
        lease = await s.acquire("q")
        await asyncio.sleep(2.0)
        assert not lease.lost
        with pytest.raises(SlotTimeout):
            await s.acquire("q", timeout_s=0.2)
        await s.release(lease)


async def test_revoke_tells_the_holder(slots: ClusterSlots, ns_url: str) -> None:
    await slots.configure_queue("q", limit=1)
    lease = await slots.acquire("q")
    waiter = asyncio.create_task(slots.acquire("q", timeout_s=60))
    await until(lambda: _waiting(slots, 1))
    async with ClusterSlots(ns_url) as other:
        assert await other.revoke(lease.lease_id, "stuck")
        assert not await other.revoke(lease.lease_id)
    await until(lambda: _true(lease.lost))
    assert lease.lost_reason == "revoked: stuck"
    nxt = await asyncio.wait_for(waiter, 20)
    assert nxt.fence > lease.fence
    await slots.release(lease)  # forgetting a lost lease frees nothing
    assert (await slots.snapshot())["queues"]["q"]["in_use"] == 1
    await slots.release(nxt)


async def test_refuses_an_evicting_redis(tmp_path) -> None:
    server = PrivateRedis(tmp_path, policy="allkeys-lru")
    server.start()
    try:
        with pytest.raises(RedisNotSafe, match="noeviction"):
            await ClusterSlots(server.url("x")).open()
    finally:
        server.stop()


async def test_nothing_left_after_close(slots: ClusterSlots, ns_url: str) -> None:
    await slots.configure_queue("q", limit=1)
    async with ClusterSlots(ns_url) as other:
        held = await other.acquire("q")
        waiter = asyncio.create_task(slots.acquire("q", timeout_s=60))
        await until(lambda: _waiting(slots, 1))
    # other closed: its lease released, the waiter got it
    lease = await asyncio.wait_for(waiter, 20)
    assert lease.fence > held.fence
    await slots.release(lease)
    await slots.close()
    parsed = parse_cluster_url(ns_url)
    r = aredis.Redis.from_url(parsed.redis_url, decode_responses=True)
    keys = sorted(await r.keys("*"))
    await r.aclose()
    p = parsed.prefix
    assert set(keys) <= {
        f"{p}:queues",
        f"{p}:q:q:cfg",
        f"{p}:q:q:st",
        f"{p}:seq",
        f"{p}:fence",
        f"{p}:epoch",
        f"{p}:opt",
        f"{p}:tick",
        f"{p}:events",  # the capped event stream
    }


def test_blocking_facade(ns_url: str) -> None:
    with ClusterSlots.blocking(ns_url) as s:
        s.configure_queue("q", limit=1)
        with s.slot("q", owner="t") as lease:
            assert lease.fence > 0
            with pytest.raises(SlotTimeout):
                s.acquire("q", timeout_s=0.2)
        with pytest.raises(UnknownQueue):
            s.acquire("missing")
        assert s.snapshot()["queues"]["q"]["totals"]["granted"] == 1


def test_readme_cluster_example_runs(redis_server: PrivateRedis) -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = next(b for b in re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M) if "ClusterSlots(" in b)
    example = example.replace("redis://127.0.0.1:6379/0?namespace=myapp", redis_server.url("readme"))
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "holding " in result.stdout and "'granted': 1, 'released': 1" in result.stdout


async def test_revoked_holder_learns_on_renewal_when_the_message_is_lost(ns_url: str) -> None:
    async with ClusterSlots(ns_url, lease_ttl_s=0.9, claim_ttl_s=0.9) as holder, ClusterSlots(ns_url) as other:
        await holder.configure_queue("q", limit=1)
        lease = await holder.acquire("q")
        holder._dispatch = lambda msg: None  # type: ignore[method-assign]  # the inbox message never arrives
        assert await other.revoke(lease.lease_id)
        await until(lambda: _true(lease.lost))
        assert lease.lost_reason == "expired or revoked"


def test_blocking_facade_from_many_threads(ns_url: str) -> None:
    import threading

    inside = peak = 0
    lock = threading.Lock()
    errors: list[BaseException] = []
    with ClusterSlots.blocking(ns_url) as s:
        s.configure_queue("q", limit=2)

        def work() -> None:
            nonlocal inside, peak
            try:
                for _ in range(5):
                    with s.slot("q", timeout_s=60):
                        with lock:
                            inside += 1
                            peak = max(peak, inside)
                        time.sleep(0.005)
                        with lock:
                            inside -= 1
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        totals = s.snapshot()["queues"]["q"]["totals"]
    assert not errors and peak == 2
    assert totals["granted"] == 30 == totals["released"]


def test_blocking_facade_rate_ttl_renew_cancel_detail(ns_url: str) -> None:
    from embedded_service.errors import LeaseGone

    with ClusterSlots.blocking(ns_url) as s:
        s.configure_queue("q", limit=1, rate=1000.0, burst=5)
        lease = s.acquire("q", ttl_s=5)
        s.renew(lease, 10)
        assert [h["id"] for h in s.detail("q")["holders"]] == [lease.lease_id]
        assert s.cancel(lease.lease_id)
        with pytest.raises(LeaseGone):
            s.renew(lease)
        snap = s.snapshot()["queues"]["q"]
        assert snap["rate"] == 1000.0 and snap["burst"] == 5 and snap["in_use"] == 0
        assert snap["totals"]["cancelled"] == 1 and snap["totals"]["revoked"] == 1


async def test_cancel_of_a_holder_reaches_its_process(slots: ClusterSlots, ns_url: str) -> None:
    await slots.configure_queue("q", limit=1)
    lease = await slots.acquire("q", owner="worker")
    async with ClusterSlots(ns_url) as operator:
        holders = (await operator.detail("q"))["holders"]
        assert [(h["id"], h["owner"], h["process"]) for h in holders] == [(lease.lease_id, "worker", slots.proc_id)]
        assert await operator.cancel(lease.lease_id)
    await until(lambda: _true(lease.lost))
    assert lease.lost_reason == "cancelled"
    with pytest.raises(LeaseLost):
        lease.raise_if_lost()
    totals = (await slots.snapshot())["queues"]["q"]["totals"]
    assert totals["cancelled"] == 1 and totals["revoked"] == 1
