"""The true backlog: every queued job counts as waiting, not only the runner's window of engine waiters."""

from __future__ import annotations

import asyncio

from jobhelpers import wait_job, wait_until

from embedded_service import SlotService
from embedded_service.jobs import JobSettings
from embedded_service.model import JobState


async def test_100_jobs_at_limit_5_show_95_waiting_in_the_snapshot_marks_and_history(store_url: str) -> None:
    gate = asyncio.Event()
    service = SlotService(store=store_url, jobs=JobSettings(poll_s=0.05))  # default window (64): smaller than 95
    service.configure_queue("default", limit=5)
    async with service:

        @service.task("one_second")
        async def one_second() -> None:
            await gate.wait()  # a one-second job that the test lets finish when it has looked

        for _ in range(100):
            await service.submit("one_second")

        def stats() -> tuple[int, int]:
            q = service.snapshot().queues[0]
            return q.in_use, q.waiting

        await wait_until(lambda: stats() == (5, 95), what="5 running and 95 waiting")
        q = service.snapshot().queues[0]
        assert q.marks.waiting == 95
        assert q.est_wait_s is None  # no hold time observed yet: unknown, not "the window's"
        await service.sample_once()
        assert service.history(60).queues["default"].waiting[-1] == 95

        gate.set()
        await wait_until(lambda: stats() == (0, 0), timeout=60, what="all 100 jobs done")
        q = service.snapshot().queues[0]
        assert (q.totals.granted, q.marks.waiting) == (100, 95)


async def test_est_wait_counts_the_jobs_beyond_the_window(store_url: str) -> None:
    release = asyncio.Event()
    service = SlotService(store=store_url, jobs=JobSettings(poll_s=0.05, window=4))
    service.configure_queue("q", limit=1)
    async with service:

        @service.task("hold", queue="q")
        async def hold() -> None:
            await release.wait()

        async with service.slot("q"):  # one hold sample of ~0 s is not enough: give it a known mean
            pass
        service.engine.queues["q"].hold_samples.clear()
        service.engine.queues["q"].hold_samples.append(2.0)
        for _ in range(21):
            await service.submit("hold")
        await wait_until(lambda: service.snapshot().queues[0].waiting == 20, what="20 waiting")
        # 20 ahead, then the newcomer: 21 holds of 2 s at limit 1
        assert service.snapshot().queues[0].est_wait_s == 42.0
        release.set()


async def test_an_idle_runner_claims_nothing_for_queues_without_queued_jobs(store_url: str) -> None:
    service = SlotService(store=store_url, jobs=JobSettings(poll_s=0.02))
    for i in range(50):
        service.configure_queue(f"q{i}", limit=1)
    async with service:
        claims: list[str] = []
        real_claim = service.store.claim_jobs

        async def counting_claim(queue: str, *args: object, **kwargs: object) -> object:
            claims.append(queue)
            return await real_claim(queue, *args, **kwargs)  # type: ignore[arg-type]

        service.store.claim_jobs = counting_claim  # type: ignore[method-assign]
        await asyncio.sleep(0.3)  # about 15 polls
        assert claims == []

        @service.task("noop", queue="q7")
        async def noop() -> int:
            return 1

        job = await service.submit("noop")
        assert (await wait_job(service, job.id)).state is JobState.succeeded
        assert set(claims) <= {"q7"}


async def test_a_job_granted_at_once_never_counts_as_waiting(store_url: str) -> None:
    service = SlotService(store=store_url, jobs=JobSettings(poll_s=0.05))
    service.configure_queue("default", limit=2)
    async with service:

        @service.task("noop")
        async def noop() -> None:
            return None

        job = await service.submit("noop")
        assert (await wait_job(service, job.id)).state is JobState.succeeded
        assert service.snapshot().queues[0].marks.waiting == 0
