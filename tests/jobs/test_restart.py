"""A graceful restart: queued jobs resume in their order; jobs the shutdown stopped are queued again and run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jobhelpers import wait_job, wait_until

from embedded_service import SlotService
from embedded_service.jobs import JobSettings
from embedded_service.model import JobState

SETTINGS = JobSettings(poll_s=0.05, kill_grace_s=1.0, window=4)


async def test_queued_jobs_resume_in_order_and_jobs_stopped_by_the_shutdown_run_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/restart.db"
    first = SlotService(store=url, jobs=SETTINGS)
    first.configure_queue("default", limit=2)

    @first.task("hold")
    async def hold(tag: str) -> None:
        await asyncio.sleep(60)

    async with first:
        once = await first.submit("hold", ["once"])
        twice = await first.submit("hold", ["twice"], max_attempts=2)
        await wait_job(first, once.id, lambda j: j.state is JobState.running)
        await wait_job(first, twice.id, lambda j: j.state is JobState.running)
        queued = [await first.submit("hold", [f"q{n}"], priority=n % 3) for n in range(12)]
    # closed: the two running jobs were stopped
    order: list[str] = []
    second = SlotService(store=url, jobs=SETTINGS)
    second.configure_queue("default", limit=1)

    @second.task("hold")
    async def note(tag: str) -> None:
        order.append(tag)

    async with second:
        # stopped by the shutdown: back in the queue whatever their attempts, the stop not counted as one
        await wait_until(lambda: len(order) == 14, what="the queued jobs and the two stopped ones")
        expected = ["once", "twice"] + [job.args[0] for job in sorted(queued, key=lambda j: (j.priority, j.seq))]
        assert order == expected
        for job_id in (once.id, twice.id):
            rerun = await wait_job(second, job_id, lambda j: j.state is JobState.succeeded)
            assert rerun.attempts == 1


async def test_the_queue_config_and_marks_survive_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/config.db"
    async with SlotService(store=url) as svc:
        svc.configure_queue("chat", limit=3, max_waiting=10)
        async with svc.slot("chat"), svc.slot("chat"):
            pass
        await svc.set_limit("chat", 5)
    async with SlotService(store=url) as svc:
        stats = svc.snapshot().queues[0]
        assert (stats.config.name, stats.config.limit, stats.config.max_waiting) == ("chat", 5, 10)
        assert (stats.marks.in_use, stats.totals.granted) == (2, 2)
