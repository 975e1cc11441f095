"""`SlotService(store="redis://...")`: two services on one private Redis are one admission domain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from embedded_service import SlotService
from embedded_service.errors import NotInRedisMode, SlotTimeout, StoreFault, UnknownQueue
from embedded_service.model import Snapshot


@pytest.fixture
async def pair(ns_url: str) -> AsyncIterator[tuple[SlotService, SlotService]]:
    a, b = SlotService(ns_url), SlotService(ns_url)
    a.configure_queue("q", limit=1, timeout_s=30)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_slot_is_shared_and_the_snapshot_shows_the_deployment(pair: tuple[SlotService, SlotService]) -> None:
    a, b = pair
    await b.refresh()
    assert b.has_queue("q") and b.queue_config("q").limit == 1  # configured by a, seen by b
    async with a.slot("q", owner="alice") as lease:
        with pytest.raises(SlotTimeout):
            await b.acquire("q", timeout_s=0.3)  # a's slot counts on b
        waiter = asyncio.create_task(b.acquire("q", owner="bob", timeout_s=10))
        for _ in range(100):
            await a.refresh()
            if a.queue_stats("q").waiting == 1:
                break
            await asyncio.sleep(0.02)
        snap = a.snapshot()
        Snapshot.model_validate(snap.model_dump())  # the same model as in-process, valid
        (q,) = snap.queues
        assert (q.in_use, q.waiting, q.owners, q.config.limit) == (1, 1, 2, 1)
        assert [(x.id, x.owner, x.fence) for x in snap.leases] == [(lease.id, "alice", lease.fence)]
        assert [(w.owner, w.position) for w in snap.waiters] == [("bob", 1)]
        assert sorted(i.id for i in snap.instances) == sorted((a.cluster.slots.proc_id, b.cluster.slots.proc_id))
    second = await waiter  # a's release hands the slot to b's waiter
    assert second.fence > lease.fence
    assert b.release(second) and not b.release(second)
    for _ in range(100):
        await b.refresh()
        if b.queue_stats("q").in_use == 0:
            break
        await asyncio.sleep(0.02)
    stats = b.queue_stats("q")
    assert (stats.in_use, stats.marks.in_use, stats.marks.waiting) == (0, 1, 1)
    assert (stats.totals.granted, stats.totals.released, stats.totals.timed_out) == (2, 2, 1)


async def test_live_changes_hold_for_every_service(pair: tuple[SlotService, SlotService]) -> None:
    a, b = pair
    await b.refresh()
    await b.set_limit("q", 2)
    await b.pause("q")
    await a.refresh()
    assert a.queue_config("q").limit == 2 and a.queue_config("q").paused
    with pytest.raises(SlotTimeout):
        await a.acquire("q", timeout_s=0.3)  # paused through b
    await b.resume("q")
    first, second = await a.acquire("q", timeout_s=5), await a.acquire("q", timeout_s=5)  # limit 2 through b
    with pytest.raises(SlotTimeout):
        await b.acquire("q", timeout_s=0.3)
    a.release(first)
    a.release(second)
    with pytest.raises(UnknownQueue):
        await a.set_limit("nope", 3)
    await b.replace_queue("fresh", limit=1, paused=True)  # a queue made live (PUT) by b ...
    await a.resume("fresh")  # ... is a's to change
    held = await a.acquire("fresh", timeout_s=5)
    with pytest.raises(SlotTimeout):
        await b.acquire("fresh", timeout_s=0.3)
    a.release(held)


async def test_jobs_are_off_and_a_bad_redis_is_one_clear_error(ns_url: str) -> None:
    svc = SlotService(ns_url)
    with pytest.raises(NotInRedisMode, match="owns no job store"):
        await svc.submit_command(["true"])
    unreachable = SlotService("redis://127.0.0.1:1/0?namespace=x")
    with pytest.raises(StoreFault, match="redis unreachable"):
        await unreachable.start()
