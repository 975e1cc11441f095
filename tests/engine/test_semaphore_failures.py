"""The known failure modes of semaphores, each driven deterministically.

- a waiter woken by a release and cancelled (or timing out) before it runs
  (the lost-wakeup class of CPython gh-90155): no leaked slot, no hung waiters;
- a releaser that re-acquires at once must not jump the queue;
- double release, release by a non-holder and release of an expired lease are
  harmless and counted.
"""

from __future__ import annotations

import asyncio

import pytest

from embedded_service import SlotService, SlotTimeout
from embedded_service.engine import ManualClock


async def _holder_and_waiters(svc: SlotService, settle, count: int):
    svc.configure_queue("q", limit=1)
    holder = await svc.acquire("q")
    tasks = [asyncio.create_task(svc.acquire("q", owner=f"w{i}")) for i in range(count)]
    await settle()
    return holder, tasks


async def test_woken_then_cancelled_before_running_gives_slot_to_next(svc: SlotService, settle, stats) -> None:
    holder, (first, second) = await _holder_and_waiters(svc, settle, 2)
    svc.release(holder)  # the grant goes to `first` now...
    first.cancel()  # ...which is cancelled before it ever runs
    await settle()
    assert first.cancelled()
    assert second.done(), "the next waiter must not hang"
    lease = second.result()
    assert stats("q").in_use == 1
    svc.release(lease)
    assert stats("q").in_use == 0
    assert stats("q").totals.granted == stats("q").totals.released == 3


async def test_cancelled_then_woken_in_the_same_tick(svc: SlotService, settle, stats) -> None:
    """The reverse order: the waiter's task is cancelled first and the release lands before it runs."""
    holder, (first, second) = await _holder_and_waiters(svc, settle, 2)
    first.cancel()
    assert svc.release(holder) is True
    await settle()
    assert first.cancelled()
    assert second.done() and not second.cancelled()
    assert stats("q").in_use == 1
    svc.release(second.result())
    assert stats("q").in_use == 0
    totals = stats("q").totals
    assert totals.granted == totals.released
    assert totals.cancelled == 1


async def test_every_waiter_cancelled_after_wakeup_leaves_the_slot_free(svc: SlotService, settle, stats) -> None:
    holder, tasks = await _holder_and_waiters(svc, settle, 3)
    svc.release(holder)
    for task in tasks:
        task.cancel()
    await settle()
    assert stats("q").in_use == 0
    assert stats("q").waiting == 0
    svc.release(await svc.acquire("q", timeout_s=1))


async def test_woken_then_timer_fires_before_running_keeps_the_grant(
    svc: SlotService, clock: ManualClock, settle, stats
) -> None:
    """A grant made at release time wins over a timeout due in the same instant."""
    svc.configure_queue("q", limit=1)
    holder = await svc.acquire("q")
    waiter = asyncio.create_task(svc.acquire("q", timeout_s=5))
    await settle()
    clock.advance(4.999)
    svc.release(holder)
    clock.advance(1)  # its timeout instant passes before the task runs
    await settle()
    lease = waiter.result()
    assert stats("q").totals.timed_out == 0
    svc.release(lease)
    assert stats("q").in_use == 0


async def test_timed_out_waiter_does_not_take_a_later_slot(svc: SlotService, clock: ManualClock, settle, stats) -> None:
    holder, (first, second) = await _holder_and_waiters(svc, settle, 2)
    clock.advance(300)  # both time out before any release
    await settle()
    assert isinstance(first.exception(), SlotTimeout)
    assert isinstance(second.exception(), SlotTimeout)
    svc.release(holder)
    assert stats("q").in_use == 0
    assert stats("q").totals.timed_out == 2


async def test_wait_for_cancellation_around_grant_never_leaks(svc: SlotService, settle, stats) -> None:
    """`asyncio.wait_for` around acquire, with the release landing in every position relative to its timeout."""
    svc.configure_queue("q", limit=1)
    for rounds_before_release in range(4):
        holder = await svc.acquire("q")
        task = asyncio.create_task(asyncio.wait_for(svc.acquire("q"), timeout=0))
        for _ in range(rounds_before_release):
            await asyncio.sleep(0)
        svc.release(holder)
        try:
            lease = await task
        except TimeoutError:
            pass
        else:
            svc.release(lease)
        await settle()
        assert stats("q").in_use == 0, rounds_before_release
        assert stats("q").waiting == 0


async def test_releaser_reacquiring_at_once_goes_behind_waiters(svc: SlotService, settle) -> None:
    svc.configure_queue("q", limit=1)
    holder = await svc.acquire("q", owner="greedy")
    waiter = asyncio.create_task(svc.acquire("q", owner="patient"))
    await settle()
    svc.release(holder)
    again = asyncio.create_task(svc.acquire("q", owner="greedy"))  # before `waiter` has run
    await settle()
    assert waiter.done() and waiter.result().owner == "patient"
    assert not again.done()
    svc.release(waiter.result())
    await settle()
    assert again.result().owner == "greedy"


async def test_slot_loop_reentering_is_fair(svc: SlotService) -> None:
    """Two tasks looping over `async with slot()` alternate instead of one hogging it."""
    svc.configure_queue("q", limit=1)
    turns: list[str] = []

    async def worker(name: str) -> None:
        for _ in range(5):
            async with svc.slot("q"):
                turns.append(name)
                await asyncio.sleep(0)

    await asyncio.gather(worker("a"), worker("b"))
    assert turns == ["a", "b"] * 5


async def test_double_release_is_harmless_and_counted(svc: SlotService, stats) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q")
    assert svc.release(lease) is True
    assert svc.release(lease) is False
    assert stats("q").in_use == 0
    totals = stats("q").totals
    assert (totals.released, totals.bad_releases) == (1, 1)


async def test_release_by_non_holder_is_refused_and_counted(svc: SlotService, stats) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q", owner="alice")
    assert svc.release(lease, owner="mallory") is False
    assert stats("q").in_use == 1
    assert stats("q").totals.bad_releases == 1
    assert svc.release(lease, owner="alice") is True
    assert stats("q").in_use == 0


async def test_release_of_expired_lease_is_harmless_and_counted(svc: SlotService, clock: ManualClock, settle, stats) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q", ttl_s=10)
    clock.advance(10)
    assert stats("q").in_use == 0
    next_holder = await svc.acquire("q")
    assert svc.release(lease) is False
    assert stats("q").in_use == 1, "the late release must not free the new holder's slot"
    totals = stats("q").totals
    assert (totals.expired, totals.bad_releases, totals.released) == (1, 1, 0)
    svc.release(next_holder)


async def test_release_of_unknown_id_is_counted_without_a_queue(svc: SlotService) -> None:
    before = svc.engine.unattributed_bad_releases
    assert svc.release("no-such-lease") is False
    assert svc.engine.unattributed_bad_releases == before + 1


@pytest.mark.parametrize("holders", [1, 3])
async def test_many_cancellations_under_churn_keep_counts(svc: SlotService, settle, stats, holders: int) -> None:
    """Release, cancel and acquire interleaved over many rounds: in_use never exceeds limit, ends at zero."""
    svc.configure_queue("q", limit=holders)
    leases = [await svc.acquire("q") for _ in range(holders)]
    tasks = [asyncio.create_task(svc.acquire("q")) for _ in range(30)]
    await settle()
    for i, task in enumerate(tasks):
        if leases:
            svc.release(leases.pop())
        if i % 3 == 0:
            task.cancel()
        await settle(2)
        assert stats("q").in_use <= holders
        leases.extend(t.result() for t in tasks if t.done() and not t.cancelled() and t.result() not in leases)
        leases = [lease for lease in leases if lease.id in svc.engine.leases]
    for task in tasks:
        task.cancel()
    await settle()
    for lease in list(svc.engine.leases.values()):
        svc.release(lease)
    assert stats("q").in_use == 0
    totals = stats("q").totals
    assert totals.granted == totals.released
