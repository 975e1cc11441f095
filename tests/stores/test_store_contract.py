"""The contract every store keeps: what the service and the API rely on, whatever the backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from embedded_service.model import (
    AuditEntry,
    Job,
    JobKind,
    JobState,
    Marks,
    QueueConfig,
    Role,
    StoredToken,
    Totals,
)
from embedded_service.stores import Store

Reopen = Callable[[Store], Awaitable[Store]]


def make_job(job_id: str, queue: str = "q", priority: int = 0, **fields: object) -> Job:
    return Job(id=job_id, kind=JobKind.task, task="t", queue=queue, priority=priority, created_at=1.0, **fields)


async def test_queue_configs_and_state_round_trip(store: Store) -> None:
    await store.save_queue(QueueConfig(name="a", limit=3, paused=True))
    await store.save_queue(QueueConfig(name="b", limit=1))
    await store.save_queue(QueueConfig(name="a", limit=4, paused=True))
    assert sorted((q.name, q.limit) for q in await store.load_queues()) == [("a", 4), ("b", 1)]
    marks = Marks(in_use=3, in_use_at=10.0, waiting=7, waiting_at=11.0)
    await store.save_queue_state({"a": (marks, Totals(granted=5, timed_out=1))})
    assert await store.load_queue_state() == {"a": (marks, Totals(granted=5, timed_out=1))}
    await store.delete_queue("a")
    assert [q.name for q in await store.load_queues()] == ["b"]
    assert await store.load_queue_state() == {}


async def test_add_job_assigns_increasing_seq_and_rejects_a_duplicate_id(store: Store) -> None:
    first = await store.add_job(make_job("j1"))
    second = await store.add_job(make_job("j2"))
    assert 0 < first.seq < second.seq
    with pytest.raises(ValueError, match="already exists"):
        await store.add_job(make_job("j1"))
    assert (await store.get_job("j1")) == first
    assert await store.get_job("nope") is None


async def test_concurrent_adds_each_get_a_distinct_seq(store: Store) -> None:
    jobs = await asyncio.gather(*(store.add_job(make_job(f"j{i}")) for i in range(300)))
    assert len({job.seq for job in jobs}) == 300
    page = await store.list_jobs(limit=1000)
    assert {job.id for job in page.jobs} == {f"j{i}" for i in range(300)}


async def test_an_idempotency_key_gets_the_first_job_until_it_is_a_day_old(store: Store) -> None:
    made = await asyncio.gather(*(store.add_job_once(make_job(f"j{i}"), "ann\nk", fresh_after=0.5) for i in range(5)))
    assert sum(created for _job, created in made) == 1  # concurrent submits with one key: one job
    first = next(job for job, created in made if created)
    assert {job.id for job, _created in made} == {first.id}
    other, created = await store.add_job_once(make_job("other"), "bob\nk", fresh_after=0.5)
    assert created and other.id == "other"
    # created_at 1.0 is older than the window now: the key is free again and names the new job
    newer, created = await store.add_job_once(make_job("newer"), "ann\nk", fresh_after=2.0)
    assert created and newer.id == "newer"
    again, created = await store.add_job_once(make_job("late"), "ann\nk", fresh_after=0.5)
    assert not created and again.id == "newer"
    assert (await store.get_job(first.id)) is not None  # the old job itself is kept
    assert len((await store.list_jobs(limit=100)).jobs) == 3


async def test_save_job_replaces_state_and_keeps_seq(store: Store) -> None:
    stored = await store.add_job(make_job("j1"))
    done = stored.model_copy(update={"state": JobState.succeeded, "result": {"n": 1}, "finished_at": 5.0})
    await store.save_job(done)
    again = await store.get_job("j1")
    assert again is not None
    assert (again.state, again.result, again.seq) == (JobState.succeeded, {"n": 1}, stored.seq)
    with pytest.raises(KeyError):
        await store.save_job(make_job("ghost"))


async def test_list_jobs_filters_newest_first_and_pages_without_gaps(store: Store) -> None:
    for i in range(25):
        await store.add_job(make_job(f"j{i:02}", queue="a" if i % 2 else "b", owner="ann" if i % 3 == 0 else "bob"))
    failed = await store.get_job("j05")
    assert failed is not None
    await store.save_job(failed.model_copy(update={"state": JobState.failed, "finished_at": 2.0}))

    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_jobs(limit=7, cursor=cursor)
        seen += [job.id for job in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"j{i:02}" for i in reversed(range(25))]

    assert [j.id for j in (await store.list_jobs(queue="a", owner="ann")).jobs] == ["j21", "j15", "j09", "j03"]
    assert [j.id for j in (await store.list_jobs(state=JobState.failed)).jobs] == ["j05"]
    assert len((await store.list_jobs(state=JobState.queued, queue="b")).jobs) == 13
    with pytest.raises(ValueError, match="invalid cursor"):
        await store.list_jobs(cursor="not-a-cursor")


async def test_claim_follows_priority_then_arrival_and_skips_what_it_is_told(store: Store) -> None:
    await store.add_job(make_job("late-urgent", priority=-5))
    for name, priority in [("p0-a", 0), ("p1", 1), ("p0-b", 0), ("other-queue", -9)]:
        await store.add_job(make_job(name, queue="elsewhere" if name == "other-queue" else "q", priority=priority))
    await store.add_job(make_job("backing-off", priority=-9, not_before=100.0))
    running = await store.add_job(make_job("running", priority=-9))
    await store.save_job(running.model_copy(update={"state": JobState.running}))

    order = [job.id for job in await store.claim_jobs("q", 10, now=50.0)]
    assert order == ["late-urgent", "p0-a", "p0-b", "p1"]
    assert [j.id for j in await store.claim_jobs("q", 2, now=50.0, skip={"late-urgent"})] == ["p0-a", "p0-b"]
    assert [j.id for j in await store.claim_jobs("q", 2, now=100.0)] == ["backing-off", "late-urgent"]


async def test_claim_does_not_return_a_job_once_it_left_the_queued_state(store: Store) -> None:
    job = await store.add_job(make_job("j"))
    await store.save_job(job.model_copy(update={"state": JobState.cancelled, "finished_at": 3.0}))
    assert await store.claim_jobs("q", 5, now=10.0) == []
    requeued = job.model_copy(update={"state": JobState.queued, "finished_at": None})
    await store.save_job(requeued)
    assert [j.id for j in await store.claim_jobs("q", 5, now=10.0)] == ["j"]


async def test_prune_removes_only_finished_jobs_by_age_and_count(store: Store) -> None:
    for i in range(6):
        job = await store.add_job(make_job(f"done{i}"))
        await store.save_job(job.model_copy(update={"state": JobState.succeeded, "finished_at": 10.0 + i}))
    await store.add_job(make_job("waiting"))
    interrupted = await store.add_job(make_job("interrupted"))
    await store.save_job(interrupted.model_copy(update={"state": JobState.interrupted, "finished_at": 9.0}))

    assert sorted(await store.prune_jobs(finished_before=11.0, keep=None)) == ["done0", "interrupted"]
    assert sorted(await store.prune_jobs(finished_before=None, keep=2)) == ["done1", "done2", "done3"]
    left = {job.id for job in (await store.list_jobs()).jobs}
    assert left == {"done4", "done5", "waiting"}


async def test_audit_ids_increase_and_list_newest_first(store: Store) -> None:
    added = [
        await store.add_audit(AuditEntry(at=float(i), actor="ops", action="set_limit", target="q", before=i, after=i + 1))
        for i in range(5)
    ]
    assert [e.id for e in added] == sorted({e.id for e in added})
    listed = await store.list_audit(limit=3)
    assert [e.before for e in listed] == [4, 3, 2]
    assert [e.before for e in await store.list_audit(limit=10, before_id=added[2].id)] == [1, 0]
    assert listed[0] == added[4]


async def test_tokens_are_found_by_hash_listed_and_deleted(store: Store) -> None:
    ops = StoredToken(name="ops", role=Role.operator, created_at=2.0, token_hash="h-ops")
    admin = StoredToken(name="admin", role=Role.admin, created_at=1.0, token_hash="h-admin")
    await store.save_token(ops)
    await store.save_token(admin)
    assert await store.find_token("h-ops") == ops
    assert await store.find_token("h-none") is None
    assert [t.name for t in await store.list_tokens()] == ["admin", "ops"]
    assert await store.delete_token("ops") is True
    assert await store.delete_token("ops") is False
    assert await store.find_token("h-ops") is None


async def test_a_token_name_is_taken_once_without_replace(store: Store) -> None:
    first = StoredToken(name="ci", role=Role.viewer, created_at=1.0, token_hash="h-first")
    second = StoredToken(name="ci", role=Role.admin, created_at=2.0, token_hash="h-second")
    assert await store.save_token(first, replace=False) is True
    assert await store.save_token(second, replace=False) is False  # the first stays, untouched
    assert await store.find_token("h-first") == first and await store.find_token("h-second") is None
    assert await store.save_token(second) is True  # replace (the default) replaces
    assert await store.find_token("h-second") == second and await store.find_token("h-first") is None


async def test_everything_survives_a_restart(store: Store, reopen: Reopen) -> None:
    await store.save_queue(QueueConfig(name="gpu", limit=2, per_gpu=1))
    await store.save_queue_state({"gpu": (Marks(in_use=2, in_use_at=5.0), Totals(granted=9))})
    job = await store.add_job(make_job("j1", queue="gpu", args=[1, "two"], kwargs={"x": [3]}))
    await store.add_audit(AuditEntry(at=1.0, actor="ops", action="pause", target="gpu"))
    await store.save_token(StoredToken(name="ci", role=Role.client, created_at=1.0, token_hash="h-ci"))

    again = await reopen(store)
    assert [(q.name, q.limit, q.per_gpu) for q in await again.load_queues()] == [("gpu", 2, 1)]
    assert (await again.load_queue_state())["gpu"][1].granted == 9
    assert await again.get_job("j1") == job
    assert [j.id for j in await again.claim_jobs("gpu", 5, now=2.0)] == ["j1"]
    assert [(e.action, e.target) for e in await again.list_audit()] == [("pause", "gpu")]
    assert (await again.find_token("h-ci")) is not None
    later = await again.add_job(make_job("j2", queue="gpu"))
    assert later.seq > job.seq
