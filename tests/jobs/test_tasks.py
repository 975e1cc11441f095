"""Task jobs: registered callables run under the engine's slots, durably, with retries and cancel."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from jobhelpers import wait_job, wait_until

from embedded_service import SlotService, UnknownJob, UnknownQueue, UnknownTask
from embedded_service.jobs import JobSettings
from embedded_service.model import JobState


async def test_async_and_sync_tasks_run_and_keep_their_results(svc: SlotService) -> None:
    threads: list[str] = []

    @svc.task("add")
    async def add(a: int, b: int) -> int:
        return a + b

    @svc.task("where")
    def where(tag: str) -> dict[str, str]:
        threads.append(threading.current_thread().name)
        return {"tag": tag}

    first = await svc.submit("add", [2, 3], owner="ann")
    assert (first.state, first.owner, first.seq > 0) == (JobState.queued, "ann", True)
    second = await svc.submit("where", kwargs={"tag": "x"})
    assert (await wait_job(svc, first.id)).result == 5
    done = await wait_job(svc, second.id)
    assert (done.state, done.result, done.attempts) == (JobState.succeeded, {"tag": "x"}, 1)
    assert threads and threads[0] != threading.main_thread().name
    assert svc.snapshot().queues[0].totals.released == 2


async def test_a_failing_task_is_retried_with_backoff_then_fails_with_its_error(svc: SlotService) -> None:
    calls: list[float] = []

    @svc.task("flaky")
    async def flaky() -> None:
        calls.append(time.monotonic())
        raise RuntimeError(f"boom {len(calls)}")

    job = await svc.submit("flaky", max_attempts=3)
    done = await wait_job(svc, job.id)
    assert (done.state, done.attempts, done.error) == (JobState.failed, 3, "RuntimeError: boom 3")
    assert calls[1] - calls[0] >= 0.04 and calls[2] - calls[1] >= 0.09  # 0.05 s, then doubled


async def test_a_task_that_succeeds_on_retry_ends_succeeded(svc: SlotService) -> None:
    calls = []

    @svc.task("second-time-lucky")
    def lucky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("not yet")
        return "ok"

    done = await wait_job(svc, (await svc.submit("second-time-lucky", max_attempts=2)).id)
    assert (done.state, done.result, done.attempts) == (JobState.succeeded, "ok", 2)


async def test_max_runtime_stops_an_async_task_as_timed_out(svc: SlotService) -> None:
    @svc.task("slow")
    async def slow() -> None:
        await asyncio.sleep(30)

    done = await wait_job(svc, (await svc.submit("slow", max_runtime_s=0.2)).id)
    assert done.state is JobState.timed_out
    assert svc.snapshot().queues[0].in_use == 0


async def test_cancel_running_and_queued_jobs(svc: SlotService) -> None:
    started = asyncio.Event()

    @svc.task("block")
    async def block() -> None:
        started.set()
        await asyncio.sleep(30)

    await svc.set_limit("default", 1)
    running = await svc.submit("block")
    waiting = await svc.submit("block")
    await asyncio.wait_for(started.wait(), 5)
    assert (await svc.cancel_job(waiting.id)).state is JobState.cancelled
    cancelled = await svc.cancel_job(running.id)
    assert cancelled.state is JobState.cancelled
    assert svc.snapshot().queues[0].in_use == 0
    assert (await svc.cancel_job(running.id)).state is JobState.cancelled  # idempotent
    with pytest.raises(UnknownJob):
        await svc.cancel_job("j-none")


async def test_svc_cancel_accepts_a_job_id_and_an_operator_lease_cancel_stops_the_job(svc: SlotService) -> None:
    @svc.task("block")
    async def block() -> None:
        await asyncio.sleep(30)

    by_id = await svc.submit("block")
    by_lease = await svc.submit("block")
    running = await wait_job(svc, by_lease.id, lambda j: j.state is JobState.running)
    await wait_job(svc, by_id.id, lambda j: j.state is JobState.running)
    assert svc.cancel(by_id.id) is True
    assert running.lease_id is not None and svc.cancel(running.lease_id) is True
    assert (await wait_job(svc, by_id.id)).state is JobState.cancelled
    assert (await wait_job(svc, by_lease.id)).state is JobState.cancelled
    assert svc.cancel("nothing-by-this-id") is False


async def test_jobs_obey_the_queue_limit_and_pause(svc: SlotService) -> None:
    running = 0
    peak = 0

    @svc.task("work")
    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    await svc.pause("default")
    jobs = [await svc.submit("work") for _ in range(12)]
    await asyncio.sleep(0.2)
    assert {(await svc.get_job(j.id)).state for j in jobs} == {JobState.queued}
    await svc.resume("default")
    for job in jobs:
        assert (await wait_job(svc, job.id)).state is JobState.succeeded
    assert peak == 2


async def test_queued_jobs_run_in_priority_then_submit_order_beyond_the_window(svc: SlotService) -> None:
    order: list[int] = []

    @svc.task("note")
    async def note(n: int) -> None:
        order.append(n)

    await svc.set_limit("default", 1)
    await svc.pause("default")
    # the window holds 8: most of these wait only in the store
    expected = []
    for n in range(40):
        priority = 0 if n % 3 else -1
        await svc.submit("note", [n], priority=priority)
        expected.append((priority, n))
    await wait_until(lambda: svc.engine.queues["default"].waiting > 0, what="a window of waiters")
    assert svc.engine.queues["default"].waiting <= 8  # the engine's line is the window...
    assert svc.snapshot().queues[0].waiting == 40  # ...the queue's depth is every queued job
    await svc.resume("default")
    await wait_until(lambda: len(order) == 40, what="all 40 jobs run")
    assert order == [n for _p, n in sorted(expected)]


async def test_a_better_job_arriving_when_the_window_is_full_takes_its_place(svc: SlotService) -> None:
    order: list[str] = []

    @svc.task("note")
    async def note(tag: str) -> None:
        order.append(tag)

    await svc.set_limit("default", 1)
    await svc.pause("default")
    for n in range(20):
        await svc.submit("note", [f"p0-{n}"])
    await wait_until(lambda: svc.engine.queues["default"].waiting == 8, what="a full window")
    await svc.submit("note", ["urgent"], priority=-1)
    assert svc.engine.queues["default"].waiting == 8
    assert svc.snapshot().queues[0].waiting == 21
    await svc.resume("default")
    await wait_until(lambda: len(order) == 21, what="all jobs run")
    assert order == ["urgent"] + [f"p0-{n}" for n in range(20)]


async def test_bad_submits_fail_clearly_and_store_nothing(svc: SlotService) -> None:
    @svc.task("t", queue="nowhere")
    async def t() -> None: ...

    @svc.task("ok")
    async def ok(x: object) -> None: ...

    with pytest.raises(UnknownTask):
        await svc.submit("not-registered")
    with pytest.raises(UnknownQueue):
        await svc.submit("t")
    with pytest.raises(ValueError, match="JSON-serializable"):
        await svc.submit("ok", [object()])
    with pytest.raises(ValueError):
        await svc.submit("ok", [1], max_attempts=0)
    with pytest.raises(ValueError):
        await svc.submit_command([], queue="default")
    assert (await svc.list_jobs()).jobs == []


async def test_list_jobs_filters_and_pages(svc: SlotService) -> None:
    @svc.task("noop")
    async def noop() -> None: ...

    jobs = [await svc.submit("noop", owner="ann" if n % 2 else "bob") for n in range(7)]
    for job in jobs:
        await wait_job(svc, job.id)
    page = await svc.list_jobs(owner="ann", limit=2)
    assert [j.id for j in page.jobs] == [jobs[5].id, jobs[3].id]
    rest = await svc.list_jobs(owner="ann", limit=2, cursor=page.next_cursor)
    assert [j.id for j in rest.jobs] == [jobs[1].id] and rest.next_cursor is None
    assert len((await svc.list_jobs(state="succeeded")).jobs) == 7
    with pytest.raises(ValueError):
        await svc.list_jobs(state="sleeping")


async def test_job_events_reach_svc_events(svc: SlotService) -> None:
    @svc.task("noop")
    async def noop() -> None: ...

    seen: list[str] = []

    async def watch() -> None:
        async for kind, fields in svc.events():
            if kind == "job":
                seen.append(fields["job"]["state"])
                if fields["job"]["state"] == "succeeded":
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    await svc.submit("noop")
    await asyncio.wait_for(watcher, 5)
    assert seen == ["queued", "running", "succeeded"]


async def test_finished_jobs_are_pruned_by_count(store_url: str) -> None:
    settings = JobSettings(poll_s=0.05, keep_finished=3, prune_every_s=0.05)
    async with SlotService(store=store_url, jobs=settings) as svc:
        svc.configure_queue("default", limit=1)  # one at a time: they finish in submit order

        @svc.task("noop")
        async def noop() -> None: ...

        jobs = [await svc.submit("noop") for _ in range(8)]
        for job in jobs[-3:]:  # the newest are kept (an older one may be pruned before it is looked at); in order
            await wait_job(svc, job.id, lambda j: j.state.finished, timeout=5)
        for _ in range(100):  # pruning runs every 0.05 s
            left = (await svc.list_jobs()).jobs
            if len(left) <= 3:
                break
            await asyncio.sleep(0.02)
        assert [j.id for j in left] == [j.id for j in reversed(jobs[-3:])]  # the newest finished are kept
        with pytest.raises(UnknownJob):
            await svc.get_job(jobs[0].id)


async def test_a_job_beyond_the_window_can_be_cancelled_and_never_runs(svc: SlotService) -> None:
    ran: list[int] = []

    @svc.task("note")
    async def note(n: int) -> None:
        ran.append(n)

    await svc.pause("default")
    jobs = [await svc.submit("note", [n]) for n in range(20)]
    await wait_until(lambda: svc.engine.queues["default"].waiting == 8, what="a full window")
    assert (await svc.cancel_job(jobs[15].id)).state is JobState.cancelled
    await svc.resume("default")
    await wait_until(lambda: len(ran) == 19, what="the other jobs run")
    await asyncio.sleep(0.1)
    assert sorted(ran) == [n for n in range(20) if n != 15]


async def test_a_sync_task_past_its_runtime_keeps_its_slot_until_it_returns(svc: SlotService) -> None:
    returned = threading.Event()

    @svc.task("stubborn")
    def stubborn() -> None:
        time.sleep(0.6)
        returned.set()

    job = await svc.submit("stubborn", max_runtime_s=0.1)
    await wait_job(svc, job.id, lambda j: j.state is JobState.running)
    await asyncio.sleep(0.3)
    assert not returned.is_set() and svc.snapshot().queues[0].in_use == 1
    done = await wait_job(svc, job.id)
    assert returned.is_set() and done.state is JobState.timed_out
    assert svc.snapshot().queues[0].in_use == 0


async def test_deleting_a_queue_cancels_the_jobs_waiting_in_it(svc: SlotService) -> None:
    @svc.task("noop")
    async def noop() -> None: ...

    await svc.pause("default")
    job = await svc.submit("noop")
    await wait_until(lambda: svc.snapshot().queues[0].waiting == 1, what="the job waiting")
    await svc.delete_queue("default", force=True)
    done = await wait_job(svc, job.id)
    assert done.state is JobState.cancelled and "queue deleted" in (done.error or "")


async def test_revoking_a_jobs_lease_stops_the_job(svc: SlotService) -> None:
    @svc.task("block")
    async def block() -> None:
        await asyncio.sleep(30)

    job = await svc.submit("block")
    running = await wait_job(svc, job.id, lambda j: j.state is JobState.running)
    assert running.lease_id is not None and svc.revoke(running.lease_id)
    done = await wait_job(svc, job.id)
    assert done.state is JobState.cancelled
    assert svc.engine.listeners == []  # nothing left listening once no job holds a lease
