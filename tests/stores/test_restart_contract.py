"""Store contract for what a restart must not forget: remote leases, fence high-water, overrides, queued counts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from embedded_service.model import FieldOverride, HeldLease, Job, JobKind, JobState, Marks, QueueOverrides, Totals
from embedded_service.stores import Store

Reopen = Callable[[Store], Awaitable[Store]]


def held(lease_id: str, fence: int) -> HeldLease:
    return HeldLease(id=lease_id, queue="q", owner="o", fence=fence, granted_at=1.0, ttl_s=30.0, expires_at=31.0)


async def test_leases_marks_and_totals_are_stored_together_and_forgotten(store: Store, reopen: Reopen) -> None:
    totals = Totals(granted=2)
    await store.save_leases([held("L1", 1), held("L2", 2)], [], {"q": (Marks(in_use=2), totals)})
    await store.save_leases([], ["L1", "never-stored"])
    again = await reopen(store)
    assert [lease.id for lease in await again.load_leases()] == ["L2"]
    assert (await again.load_queue_state())["q"][1] == totals


async def test_the_fence_high_water_never_goes_down(store: Store) -> None:
    assert await store.load_fence() == 0
    await store.save_fence(2_000_000)
    await store.save_fence(1_000_000)
    assert await store.load_fence() == 2_000_000


async def test_overrides_round_trip_and_delete(store: Store, reopen: Reopen) -> None:
    record = QueueOverrides(
        configured={"limit": 3, "paused": False}, overrides={"limit": FieldOverride(value=5, by="ops", at=9.0)}
    )
    await store.save_overrides("q", record)
    await store.save_overrides("gone", record)
    await store.save_overrides("gone", None)
    again = await reopen(store)
    assert await again.load_overrides() == {"q": record}


async def test_count_queued_counts_only_queued_jobs_per_queue(store: Store) -> None:
    for i, (queue, state) in enumerate(
        [
            ("a", JobState.queued),
            ("a", JobState.queued),
            ("b", JobState.queued),
            ("b", JobState.running),
            ("c", JobState.succeeded),
        ]
    ):
        await store.add_job(Job(id=f"j{i}", kind=JobKind.task, task="t", queue=queue, state=state, created_at=1.0))
    counts = await store.count_queued()
    assert {q: n for q, n in counts.items() if n} == {"a": 2, "b": 1}
