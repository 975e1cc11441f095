"""Metrics, snapshots and the 1 Hz history ring."""

from __future__ import annotations

import asyncio

import pytest

from embedded_service import QueueFull, SlotService, SlotTimeout
from embedded_service.engine import HistoryRing, ManualClock
from embedded_service.engine.history import DEFAULT_HISTORY_POINTS
from embedded_service.model import Snapshot


async def test_high_water_marks_keep_peak_and_its_time(svc: SlotService, clock: ManualClock, settle, stats) -> None:
    svc.configure_queue("q", limit=2)
    start = clock.time()
    a = await svc.acquire("q")
    clock.advance(5)
    b = await svc.acquire("q")
    tasks = [asyncio.create_task(svc.acquire("q")) for _ in range(3)]
    await settle()
    clock.advance(5)
    for task in tasks:
        task.cancel()
    svc.release(a)
    svc.release(b)
    await settle()
    marks = stats("q").marks
    assert (marks.in_use, marks.in_use_at) == (2, start + 5)
    assert (marks.waiting, marks.waiting_at) == (3, start + 5)
    assert (stats("q").in_use, stats("q").waiting) == (0, 0)


async def test_reset_marks_restarts_from_current_values(svc: SlotService, clock: ManualClock, settle, stats) -> None:
    svc.configure_queue("q", limit=3)
    leases = [await svc.acquire("q") for _ in range(3)]
    svc.release(leases.pop())
    svc.release(leases.pop())
    clock.advance(10)
    await svc.reset_marks("q")
    marks = stats("q").marks
    assert (marks.in_use, marks.waiting, marks.reset_at, marks.in_use_at) == (1, 0, clock.time(), clock.time())
    clock.advance(1)
    await svc.acquire("q")
    assert (stats("q").marks.in_use, stats("q").marks.in_use_at) == (2, clock.time())
    saved = await svc.store.load_queue_state()
    assert saved["q"][0].reset_at == clock.time() - 1


async def test_totals_add_up_over_every_ending(svc: SlotService, clock: ManualClock, settle, stats) -> None:
    svc.configure_queue("q", limit=1, max_waiting=2)
    released = await svc.acquire("q")
    timing_out = asyncio.create_task(svc.acquire("q", timeout_s=1))
    cancelled = asyncio.create_task(svc.acquire("q"))
    await settle()
    with pytest.raises(QueueFull):
        await svc.acquire("q")
    clock.advance(1)
    cancelled.cancel()
    await settle()
    assert isinstance(timing_out.exception(), SlotTimeout)
    svc.release(released)
    expiring = await svc.acquire("q", ttl_s=5)
    clock.advance(5)
    revoked = await svc.acquire("q")
    svc.revoke(revoked.id)
    svc.release(expiring)
    totals = stats("q").totals
    assert totals.model_dump() == {
        "granted": 3,
        "released": 1,
        "timed_out": 1,
        "rejected": 1,
        "cancelled": 1,
        "expired": 1,
        "revoked": 1,
        "bad_releases": 1,
        "jobs_failed": 0,
        "jobs_timed_out": 0,
    }
    assert totals.granted == totals.released + totals.expired + totals.revoked + stats("q").in_use


async def test_wait_and_hold_percentiles(svc: SlotService, clock: ManualClock, settle, stats) -> None:
    svc.configure_queue("q", limit=1)
    assert stats("q").wait_p50_s is None and stats("q").hold_p95_s is None
    for hold in range(1, 21):  # holds of 1..20 s, each waiter waiting for the previous hold
        lease = await svc.acquire("q")
        clock.advance(hold)
        svc.release(lease)
    q = stats("q")
    assert (q.hold_p50_s, q.hold_p95_s) == (10, 19)
    assert (q.wait_p50_s, q.wait_p95_s) == (0, 0)
    holder = await svc.acquire("q")
    waiters = [asyncio.create_task(svc.acquire("q")) for _ in range(4)]
    await settle()
    for _ in waiters:
        clock.advance(8)
        svc.release(holder)
        await settle()
        holder = next(t.result() for t in waiters if t.done() and t.result().id in svc.engine.leases)
    q = stats("q")
    # waits now: twenty of 0 s, then 8, 16, 24, 32 s; the nearest-rank 95th of 24 samples is the 23rd
    assert (q.wait_p50_s, q.wait_p95_s) == (0, 24)


async def test_est_wait_from_position_and_hold_times(svc: SlotService, clock: ManualClock, settle, stats) -> None:
    svc.configure_queue("q", limit=2)
    assert stats("q").est_wait_s == 0.0  # free slot
    for _ in range(2):
        lease = await svc.acquire("q")
        clock.advance(10)
        svc.release(lease)
    await svc.acquire("q")
    await svc.acquire("q")
    assert stats("q").est_wait_s == pytest.approx(5.0)  # next in line: one hold over two slots
    tasks = [asyncio.create_task(svc.acquire("q")) for _ in range(3)]
    await settle()
    assert stats("q").est_wait_s == pytest.approx(20.0)  # three ahead plus itself
    for task in tasks:
        task.cancel()
    await settle()


async def test_snapshot_is_pydantic_with_seq_and_time(svc: SlotService, clock: ManualClock, settle) -> None:
    svc.configure_queue("a", limit=1)
    svc.configure_queue("b", limit=5)
    first = svc.snapshot()
    assert isinstance(first, Snapshot)
    assert first.at == clock.time()
    lease = await svc.acquire("a", owner="x")
    waiter = asyncio.create_task(svc.acquire("a", owner="y", priority=3))
    await settle()
    second = svc.snapshot()
    assert second.seq > first.seq
    assert [q.config.name for q in second.queues] == ["a", "b"]
    assert [(w.owner, w.priority, w.position) for w in second.waiters] == [("y", 3, 1)]
    assert second.leases[0].id == lease.id
    assert Snapshot.model_validate_json(second.model_dump_json()) == second
    waiter.cancel()
    await settle()
    assert svc.snapshot().seq > second.seq


async def test_history_ring_holds_an_hour_at_one_hertz(svc: SlotService, clock: ManualClock) -> None:
    svc.configure_queue("q", limit=4)
    lease = None
    for second in range(4000):
        if second == 3990:
            lease = await svc.acquire("q")
        await svc.sample_once()
        clock.advance(1)
    assert svc.history_ring is not None and len(svc.history_ring) == DEFAULT_HISTORY_POINTS >= 3600
    hour = svc.history(3600)
    assert len(hour.t) == 3600
    assert hour.t == sorted(hour.t)
    assert hour.t[-1] - hour.t[0] == 3599
    series = hour.queues["q"]
    assert series.limit == [4] * 3600
    assert series.in_use[-10:] == [1] * 10 and series.in_use[-11] == 0
    recent = svc.history(5)
    assert len(recent.t) == 5
    assert lease is not None


def test_history_series_fills_gaps_for_queues_that_came_and_went() -> None:
    from embedded_service.engine import Sample

    ring = HistoryRing(points=10)
    ring.add(
        Sample(
            t=1.0, queues={"a": (1, 0, 2)}, devices={"0": (100.0, 50.0, 10.0)}, host_cpu_pct=5.0, host_memory_used_mib=1.0
        )
    )
    ring.add(Sample(t=2.0, queues={"b": (0, 3, 1)}, devices={}, host_cpu_pct=None, host_memory_used_mib=None))
    history = ring.series(seconds=10, now=2.0)
    assert history.t == [1.0, 2.0]
    assert history.queues["a"].in_use == [1, 0]
    assert history.queues["b"].waiting == [0, 3]
    assert history.devices["0"].memory_used_mib == [100.0, None]
    assert history.host_cpu_pct == [5.0, None]
    assert ring.series(seconds=0.5, now=2.0).t == [2.0]


async def test_percentiles_follow_the_sliding_window_as_samples_come_and_go(svc: SlotService, clock: ManualClock) -> None:
    """The snapshot keeps a sorted copy of the samples up to date incrementally; it must equal a full sort."""
    from embedded_service.engine.queues import SAMPLE_WINDOW, percentile

    svc.configure_queue("q", limit=1)
    state = svc.engine.queues["q"]
    for round_ in range(3):
        for i in range(SAMPLE_WINDOW // 2 + 37):
            lease = await svc.acquire("q")
            clock.advance(((i * 7919 + round_) % 101) / 100)
            svc.release(lease)
            if i % 97 == 0:  # now and then mid-stream, so both the incremental and the full path run
                stats = svc.engine.queue_stats(state, clock.time())
                assert stats.hold_p50_s == percentile(state.hold_samples, 0.5)
        stats = svc.engine.queue_stats(state, clock.time())
        assert (stats.hold_p50_s, stats.hold_p95_s) == (
            percentile(state.hold_samples, 0.5),
            percentile(state.hold_samples, 0.95),
        )
        assert (stats.wait_p50_s, stats.wait_p95_s) == (
            percentile(state.wait_samples, 0.5),
            percentile(state.wait_samples, 0.95),
        )


async def test_a_snapshot_is_exact_after_every_single_sample_and_never_changes_afterwards(
    svc: SlotService, clock: ManualClock
) -> None:
    """A busy queue's snapshot after each grant/release (one sample in, one out of a full window) equals a full
    sort; the models a snapshot shares with the engine (marks, lease infos) are never changed under an old one."""
    from embedded_service.engine.queues import SAMPLE_WINDOW, percentile
    from embedded_service.model import Snapshot

    svc.configure_queue("q", limit=2, stuck_after_s=50)
    state = svc.engine.queues["q"]
    for i in range(SAMPLE_WINDOW + 300):
        lease = await svc.acquire("q", owner="busy")
        clock.advance(((i * 7919) % 101) / 100)
        svc.release(lease)
        if i >= SAMPLE_WINDOW - 5:
            stats = svc.engine.queue_stats(state, clock.time())
            assert (stats.hold_p50_s, stats.hold_p95_s) == (
                percentile(state.hold_samples, 0.5),
                percentile(state.hold_samples, 0.95),
            )
    keep = await svc.acquire("q", owner="keeper")
    before = svc.snapshot()
    assert before.queues[0].marks.in_use == 1
    frozen = before.model_dump_json()
    assert Snapshot.model_validate_json(frozen) == before  # what the engine built unvalidated is valid as it is
    (shown,) = [info for info in before.leases if info.id == keep.id]
    assert not shown.stuck
    clock.advance(60)  # the kept lease is stuck now
    await svc.acquire("q", owner="peak")  # and a new in-use peak
    after = svc.snapshot()
    assert after.queues[0].marks.in_use == 2 and after.queues[0].stuck == 1
    assert [info.stuck for info in after.leases if info.id == keep.id] == [True]
    assert before.model_dump_json() == frozen  # the earlier snapshot did not move
