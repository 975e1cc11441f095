"""slot(), acquire()/release(), priority and FIFO order, owners, per-call timeouts and the error types."""

from __future__ import annotations

import asyncio

import pytest

from embedded_service import (
    QueueFull,
    SlotCancelled,
    SlotDeckError,
    SlotService,
    SlotTimeout,
    UnknownQueue,
)
from embedded_service.engine import ManualClock


async def test_slot_context_holds_and_gives_back(svc: SlotService, stats) -> None:
    svc.configure_queue("chat", limit=2)
    async with svc.slot("chat", owner="alice") as lease:
        assert lease.queue == "chat"
        assert lease.owner == "alice"
        assert stats("chat").in_use == 1
        assert stats("chat").owners == 1
    assert stats("chat").in_use == 0
    totals = stats("chat").totals
    assert (totals.granted, totals.released) == (1, 1)


async def test_slot_gives_back_when_the_body_raises(svc: SlotService, stats) -> None:
    svc.configure_queue("chat", limit=1)
    with pytest.raises(RuntimeError, match="boom"):
        async with svc.slot("chat"):
            raise RuntimeError("boom")
    assert stats("chat").in_use == 0
    async with svc.slot("chat", timeout_s=1):
        pass


async def test_acquire_release_pair(svc: SlotService, stats) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q", owner="bob")
    assert stats("q").in_use == 1
    assert svc.release(lease) is True
    assert stats("q").in_use == 0


async def test_limit_bounds_holders_and_release_admits_next(svc: SlotService, settle, stats) -> None:
    svc.configure_queue("q", limit=2)
    a = await svc.acquire("q")
    b = await svc.acquire("q")
    third = asyncio.create_task(svc.acquire("q"))
    await settle()
    assert not third.done()
    assert (stats("q").in_use, stats("q").waiting) == (2, 1)
    svc.release(a)
    await settle()
    assert third.done()
    assert (stats("q").in_use, stats("q").waiting) == (2, 0)
    svc.release(b)
    svc.release(third.result())
    assert stats("q").in_use == 0


async def test_priority_first_then_fifo(svc: SlotService, settle) -> None:
    svc.configure_queue("q", limit=1)
    holder = await svc.acquire("q")
    order: list[str] = []

    async def wait(name: str, priority: int) -> None:
        lease = await svc.acquire("q", priority=priority)
        order.append(name)
        svc.release(lease)

    tasks = []
    for name, priority in [("low1", 5), ("high1", 0), ("low2", 5), ("high2", 0), ("urgent", -3), ("mid", 2)]:
        tasks.append(asyncio.create_task(wait(name, priority)))
        await settle(1)
    await settle()
    assert order == []
    svc.release(holder)
    await asyncio.gather(*tasks)
    assert order == ["urgent", "high1", "high2", "mid", "low1", "low2"]


async def test_per_call_timeout_raises_slot_timeout_with_wait(svc: SlotService, clock: ManualClock, settle, stats) -> None:
    svc.configure_queue("q", limit=1)
    await svc.acquire("q")
    waiter = asyncio.create_task(svc.acquire("q", timeout_s=2.5))
    await settle()
    clock.advance(2.4)
    await settle()
    assert not waiter.done()
    clock.advance(0.2)
    await settle()
    with pytest.raises(SlotTimeout) as caught:
        waiter.result()
    assert caught.value.waited_s == pytest.approx(2.5)
    assert caught.value.queue == "q"
    assert stats("q").totals.timed_out == 1
    assert stats("q").waiting == 0


async def test_default_timeout_is_300_seconds(svc: SlotService, clock: ManualClock, settle) -> None:
    svc.configure_queue("q", limit=1)
    assert svc.queue_config("q").timeout_s == 300
    await svc.acquire("q")
    waiter = asyncio.create_task(svc.acquire("q"))
    await settle()
    clock.advance(299.9)
    await settle()
    assert not waiter.done()
    clock.advance(0.1)
    await settle()
    assert isinstance(waiter.exception(), SlotTimeout)
    assert waiter.exception().waited_s == pytest.approx(300)


async def test_queue_timeout_applies_when_call_gives_none(svc: SlotService, clock: ManualClock, settle) -> None:
    svc.configure_queue("q", limit=1, timeout_s=7)
    await svc.acquire("q")
    waiter = asyncio.create_task(svc.acquire("q"))
    await settle()
    clock.advance(7)
    await settle()
    assert isinstance(waiter.exception(), SlotTimeout)


async def test_unknown_queue(svc: SlotService) -> None:
    with pytest.raises(UnknownQueue) as caught:
        await svc.acquire("nope")
    assert "nope" in str(caught.value)
    with pytest.raises(UnknownQueue):
        async with svc.slot("nope"):
            pass


async def test_queue_full_is_raised_at_once(svc: SlotService, settle, stats) -> None:
    svc.configure_queue("q", limit=1, max_waiting=2)
    await svc.acquire("q")
    waiters = [asyncio.create_task(svc.acquire("q")) for _ in range(2)]
    await settle()
    with pytest.raises(QueueFull) as caught:
        await svc.acquire("q")
    assert caught.value.waiting == 2
    assert stats("q").totals.rejected == 1
    assert stats("q").waiting == 2
    for task in waiters:
        task.cancel()
    await settle()
    assert stats("q").waiting == 0


async def test_max_waiting_zero_rejects_any_wait_but_not_a_free_slot(svc: SlotService) -> None:
    svc.configure_queue("q", limit=1, max_waiting=0)
    lease = await svc.acquire("q")
    with pytest.raises(QueueFull):
        await svc.acquire("q")
    svc.release(lease)
    svc.release(await svc.acquire("q"))


async def test_errors_share_one_base(svc: SlotService, clock: ManualClock, settle) -> None:
    assert all(issubclass(e, SlotDeckError) for e in (SlotTimeout, QueueFull, UnknownQueue, SlotCancelled))
    svc.configure_queue("q", limit=1)
    await svc.acquire("q")
    waiter = asyncio.create_task(svc.acquire("q"))
    await settle()
    waiter_id = svc.snapshot().waiters[0].id
    assert svc.cancel(waiter_id) is True
    await settle()
    assert isinstance(waiter.exception(), SlotCancelled)


async def test_owners_counts_distinct_holders_and_waiters(svc: SlotService, settle, stats) -> None:
    svc.configure_queue("q", limit=2)
    await svc.acquire("q", owner="a")
    await svc.acquire("q", owner="a")
    tasks = [asyncio.create_task(svc.acquire("q", owner=o)) for o in ("b", "c", None)]
    await settle()
    assert stats("q").owners == 3
    for task in tasks:
        task.cancel()
    await settle()
    assert stats("q").owners == 1


async def test_mixed_timeouts_each_fire_at_their_own_instant(svc: SlotService, clock: ManualClock, settle) -> None:
    """One deadline timer serves every waiter: a shorter timeout arriving later must still fire first."""
    svc.configure_queue("q", limit=1)
    await svc.acquire("q")
    long = asyncio.create_task(svc.acquire("q", timeout_s=10))
    await settle()
    short = asyncio.create_task(svc.acquire("q", timeout_s=2))
    default = asyncio.create_task(svc.acquire("q"))
    await settle()
    clock.advance(2)
    await settle()
    assert short.done() and not long.done() and not default.done()
    clock.advance(7.9)
    await settle()
    assert not long.done()
    clock.advance(0.1)
    await settle()
    assert long.exception().waited_s == pytest.approx(10)
    clock.advance(290)
    await settle()
    assert default.exception().waited_s == pytest.approx(300)
    assert clock.pending() == 0, "no timer left armed once nobody waits"


async def test_granted_waiters_do_not_pile_up_deadline_entries(svc: SlotService, settle) -> None:
    svc.configure_queue("q", limit=1)
    holder = await svc.acquire("q")
    for _ in range(2_000):  # each round: one waiter, granted at once by the release
        task = asyncio.create_task(svc.acquire("q"))
        await settle(1)
        svc.release(holder)
        await settle(1)
        holder = task.result()
    assert len(svc.engine.deadlines) <= 2 * len(svc.engine.waiters) + 65
