"""Live control: queues changed at run time, limits, pause/resume, rate, cancel and delete."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from embedded_service import QueueBusy, SlotCancelled, SlotService, UnknownQueue
from embedded_service.engine import ManualClock


async def _waiters(svc: SlotService, settle, queue: str, count: int) -> list[asyncio.Task]:
    tasks = [asyncio.create_task(svc.acquire(queue, owner=f"w{i}")) for i in range(count)]
    await settle()
    return tasks


async def test_configure_creates_changes_and_keeps_unnamed_fields(svc: SlotService, settle) -> None:
    created = svc.configure_queue("q", limit=3, max_waiting=10, stuck_after_s=60)
    assert (created.limit, created.max_waiting, created.timeout_s) == (3, 10, 300)
    changed = svc.configure_queue("q", timeout_s=5)
    assert (changed.limit, changed.max_waiting, changed.timeout_s, changed.stuck_after_s) == (3, 10, 5, 60)
    await settle()  # saved in the background
    assert [c.timeout_s for c in (await svc.store.load_queues())] == [5]


async def test_configure_rejects_bad_values_and_leaves_queue_unchanged(svc: SlotService) -> None:
    svc.configure_queue("q", limit=2)
    with pytest.raises(ValidationError):
        svc.configure_queue("q", limit=-1)
    with pytest.raises(ValidationError):
        svc.configure_queue("q", no_such_field=1)
    with pytest.raises(ValidationError):
        svc.configure_queue("bad name!")
    assert svc.queue_config("q").limit == 2


async def test_raising_limit_admits_waiters_at_once(svc: SlotService, settle, stats) -> None:
    svc.configure_queue("q", limit=1)
    await svc.acquire("q")
    tasks = await _waiters(svc, settle, "q", 3)
    await svc.set_limit("q", 3)
    await settle()
    assert [t.done() for t in tasks] == [True, True, False]
    assert (stats("q").in_use, stats("q").waiting) == (3, 1)


async def test_lowering_limit_never_preempts(svc: SlotService, settle, stats) -> None:
    svc.configure_queue("q", limit=3)
    leases = [await svc.acquire("q") for _ in range(3)]
    (waiter,) = await _waiters(svc, settle, "q", 1)
    await svc.set_limit("q", 1)
    assert stats("q").in_use == 3  # nobody lost a slot
    assert all(lease.id in svc.engine.leases for lease in leases)
    svc.release(leases[0])
    svc.release(leases[1])
    await settle()
    assert not waiter.done(), "still at or over the new limit"
    svc.release(leases[2])
    await settle()
    assert waiter.done()
    assert stats("q").in_use == 1


async def test_limit_zero_holds_everyone(svc: SlotService, settle) -> None:
    svc.configure_queue("q", limit=0)
    (waiter,) = await _waiters(svc, settle, "q", 1)
    assert not waiter.done()
    await svc.set_limit("q", 1)
    await settle()
    assert waiter.done()


async def test_pause_stops_admission_keeps_holders_and_order(svc: SlotService, settle, stats) -> None:
    svc.configure_queue("q", limit=1)
    holder = await svc.acquire("q")
    first, second = await _waiters(svc, settle, "q", 2)
    await svc.pause("q")
    svc.release(holder)  # running work finished while paused
    late = asyncio.create_task(svc.acquire("q", owner="late"))
    await settle()
    assert not any(t.done() for t in (first, second, late))
    assert (stats("q").in_use, stats("q").waiting) == (0, 3)
    assert [w.owner for w in svc.snapshot().waiters] == ["w0", "w1", "late"]
    assert stats("q").est_wait_s is None
    await svc.resume("q")
    await settle()
    assert first.done() and not second.done() and not late.done()


async def test_pause_lets_holders_run_on(svc: SlotService, stats) -> None:
    svc.configure_queue("q", limit=2)
    lease = await svc.acquire("q")
    await svc.pause("q")
    assert lease.id in svc.engine.leases
    assert svc.release(lease) is True
    assert stats("q").totals.released == 1


async def test_paused_waiters_still_time_out(svc: SlotService, clock: ManualClock, settle) -> None:
    svc.configure_queue("q", limit=1, paused=True)
    (waiter,) = await _waiters(svc, settle, "q", 1)
    clock.advance(300)
    await settle()
    assert waiter.exception() is not None


async def test_cancel_waiter_raises_slot_cancelled_and_keeps_others(svc: SlotService, settle, stats) -> None:
    svc.configure_queue("q", limit=1)
    holder = await svc.acquire("q")
    first, second = await _waiters(svc, settle, "q", 2)
    first_id = svc.snapshot().waiters[0].id
    assert svc.cancel(first_id) is True
    await settle()
    with pytest.raises(SlotCancelled):
        first.result()
    assert stats("q").totals.cancelled == 1
    assert [w.position for w in svc.snapshot().waiters] == [1]
    svc.release(holder)
    await settle()
    assert second.done()
    assert svc.cancel(first_id) is False  # already gone


async def test_cancel_holder_cancels_its_task_and_slot_comes_back(svc: SlotService, settle, stats) -> None:
    svc.configure_queue("q", limit=1)
    started = asyncio.Event()

    async def work() -> None:
        async with svc.slot("q", owner="busy"):
            started.set()
            await asyncio.Event().wait()  # would hold forever

    holder_task = asyncio.create_task(work())
    await started.wait()
    (waiter,) = await _waiters(svc, settle, "q", 1)
    lease_id = svc.snapshot().leases[0].id
    assert svc.cancel(lease_id) is True
    await settle()
    assert holder_task.cancelled()
    assert waiter.done()
    totals = stats("q").totals
    assert (totals.cancelled, totals.released, totals.granted) == (1, 1, 2)


async def test_cancel_bare_acquire_holder_revokes(svc: SlotService, stats) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q")
    assert svc.cancel(lease.id) is True
    assert stats("q").in_use == 0
    assert stats("q").totals.revoked == 1
    assert svc.release(lease) is False
    assert stats("q").totals.bad_releases == 1


async def test_cancel_unknown_id(svc: SlotService) -> None:
    assert svc.cancel("nothing") is False


async def test_delete_queue_refuses_when_busy_unless_forced(svc: SlotService, settle) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q")
    (waiter,) = await _waiters(svc, settle, "q", 1)
    with pytest.raises(QueueBusy):
        await svc.delete_queue("q")
    await svc.delete_queue("q", force=True)
    await settle()
    assert isinstance(waiter.exception(), SlotCancelled)
    assert svc.snapshot().queues == []
    assert svc.snapshot().leases == []
    assert await svc.store.load_queues() == []
    assert svc.release(lease) is False
    with pytest.raises(UnknownQueue):
        await svc.acquire("q")


async def test_force_delete_does_not_grant_to_waiters_on_the_way_out(svc: SlotService, settle) -> None:
    svc.configure_queue("q", limit=1, rate=1.0)
    await svc.acquire("q")  # takes the only token
    svc.configure_queue("q", limit=5)
    tasks = await _waiters(svc, settle, "q", 3)
    await svc.delete_queue("q", force=True)
    await settle()
    assert all(isinstance(t.exception(), SlotCancelled) for t in tasks)


async def test_recreated_queue_starts_fresh(svc: SlotService) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q")
    await svc.delete_queue("q", force=True)
    svc.configure_queue("q", limit=1)
    assert svc.release(lease) is False  # the old lease does not free the new queue's slot
    fresh = await svc.acquire("q")
    assert fresh.fence > lease.fence


async def test_rate_limits_admissions_with_burst(svc: SlotService, clock: ManualClock, settle, stats) -> None:
    svc.configure_queue("q", limit=100, rate=2.0, burst=3)
    burst = [await svc.acquire("q") for _ in range(3)]
    assert len(burst) == 3
    tasks = await _waiters(svc, settle, "q", 3)
    assert not any(t.done() for t in tasks)
    clock.advance(0.5)
    await settle()
    assert [t.done() for t in tasks] == [True, False, False]
    clock.advance(0.5)
    await settle()
    assert [t.done() for t in tasks] == [True, True, False]
    clock.advance(0.5)
    await settle()
    assert all(t.done() for t in tasks)
    assert stats("q").in_use == 6


async def test_rate_change_takes_effect_for_waiting_callers(svc: SlotService, clock: ManualClock, settle) -> None:
    svc.configure_queue("q", limit=100, rate=0.01)  # one per 100 s
    await svc.acquire("q")
    first, second = await _waiters(svc, settle, "q", 2)
    svc.configure_queue("q", rate=10.0)  # new bucket: one token now, then one per 0.1 s
    await settle()
    assert first.done()
    clock.advance(0.1)
    await settle()
    assert second.done(), "the 100 s timer armed under the old rate must not hold the line"


async def test_removing_rate_admits_at_once(svc: SlotService, settle) -> None:
    svc.configure_queue("q", limit=10, rate=0.5)
    await svc.acquire("q")
    tasks = await _waiters(svc, settle, "q", 2)
    svc.configure_queue("q", rate=None)
    await settle()
    assert all(t.done() for t in tasks)


async def test_stuck_after_counts_old_holders(svc: SlotService, clock: ManualClock, stats) -> None:
    svc.configure_queue("q", limit=3, stuck_after_s=60)
    old = await svc.acquire("q")
    clock.advance(61)
    await svc.acquire("q")
    assert stats("q").stuck == 1
    assert {lease.id: lease.stuck for lease in svc.snapshot().leases} == {
        old.id: True,
        **{lease.id: False for lease in svc.snapshot().leases if lease.id != old.id},
    }
    svc.configure_queue("q", stuck_after_s=None)
    assert stats("q").stuck == 0


@pytest.mark.parametrize("rate", [3.0, 7.0, 10.0, 1000.0])
async def test_rate_admits_one_per_period_at_epoch_float_precision(
    svc: SlotService, clock: ManualClock, settle, stats, rate: float
) -> None:
    """1/rate is not exact in binary, nor is epoch time: each period must still admit exactly one."""
    svc.configure_queue("q", limit=1000, rate=rate)
    await svc.acquire("q")
    tasks = await _waiters(svc, settle, "q", 20)
    for admitted in range(1, 21):
        clock.advance(1 / rate)
        await settle(2)
        assert sum(t.done() for t in tasks) == admitted


async def test_rate_idle_time_saves_up_only_the_burst(svc: SlotService, clock: ManualClock, settle) -> None:
    svc.configure_queue("q", limit=1000, rate=1.0, burst=3)
    clock.advance(100)
    for _ in range(3):
        await svc.acquire("q")
    tasks = await _waiters(svc, settle, "q", 1)
    assert not tasks[0].done()
    clock.advance(1)
    await settle()
    assert tasks[0].done()
