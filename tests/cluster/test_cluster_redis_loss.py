"""Redis kill -9: without persistence holders learn their leases are lost and fences never repeat;
with AOF (fsync always) the deployment carries on with the same epoch."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from redisproc import PrivateRedis

from embedded_service.cluster import ClusterSlots


async def _until(cond, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_redis_kill9_without_persistence(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        async with ClusterSlots(server.url("loss"), lease_ttl_s=3, claim_ttl_s=1) as slots:
            await slots.configure_queue("q", limit=1)
            fences = []
            for _ in range(3):
                lease = await slots.acquire("q")
                fences.append(lease.fence)
                await slots.release(lease)
            held = await slots.acquire("q")
            server.kill9()
            server.start()  # same port, empty
            await _until(lambda: held.lost)
            assert held.lost_reason == "redis data lost"
            assert slots.data_losses == 1
            # the queue this process configured is published again; the slot is free; fences go on above
            after = await slots.acquire("q", timeout_s=30)
            assert after.fence > max([*fences, held.fence])
            await slots.release(held)
            await slots.release(after)
    finally:
        server.stop()


async def test_redis_kill9_with_aof_keeps_leases(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path, aof=True)
    server.start()
    try:
        async with ClusterSlots(server.url("aof"), lease_ttl_s=10, claim_ttl_s=2) as slots:
            await slots.configure_queue("q", limit=1)
            held = await slots.acquire("q")
            server.kill9()
            server.start()
            waiter = asyncio.create_task(slots.acquire("q", timeout_s=60))
            await asyncio.sleep(1.5)  # renewals run against the restarted server meanwhile
            assert not held.lost and not waiter.done() and slots.data_losses == 0
            await slots.release(held)
            nxt = await asyncio.wait_for(waiter, 30)
            assert nxt.fence == held.fence + 1
            await slots.release(nxt)
    finally:
        server.stop()
