"""kill -9 a real service mid-stream: every acknowledged job survives exactly once, running ones are recovered."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from jobhelpers import wait_until

from embedded_service import SlotService
from embedded_service.jobs import JobSettings
from embedded_service.model import Job, JobState
from embedded_service.stores import SqliteStore

CHILD = Path(__file__).with_name("crashy_service.py")
REPO = Path(__file__).resolve().parents[2]


def run_and_kill(db: Path, acknowledged_before_kill: int) -> list[str]:
    """Start the child, read acknowledged ids until enough, SIGKILL it, return every id it acknowledged."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, str(CHILD), str(db)], stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None
    acked: list[str] = []
    try:
        while len(acked) < acknowledged_before_kill:
            line = child.stdout.readline()
            if not line:
                raise AssertionError(f"child exited early with {child.wait()}")
            acked.append(line.decode().strip())
        os.kill(child.pid, signal.SIGKILL)
        rest = child.stdout.read()  # whatever it acknowledged before dying is still in the pipe
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    complete_lines = rest.decode().split("\n")[:-1]  # a line cut by the kill was never fully acknowledged
    return acked + [line.strip() for line in complete_lines]


async def all_jobs(store: SqliteStore) -> list[Job]:
    jobs: list[Job] = []
    cursor = None
    while True:
        page = await store.list_jobs(limit=1000, cursor=cursor)
        jobs += page.jobs
        if page.next_cursor is None:
            return jobs
        cursor = page.next_cursor


async def test_kill_9_loses_no_acknowledged_job_and_recovers_running_ones(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    acked = await asyncio.to_thread(run_and_kill, db, 400)
    assert len(acked) == len(set(acked)) >= 400

    store = SqliteStore(f"sqlite:///{db}")
    await store.open()
    before = {job.id: job for job in await all_jobs(store)}
    await store.close()
    assert set(acked) <= set(before), "an acknowledged job is missing after kill -9"
    was_running = [job for job in before.values() if job.state is JobState.running]
    assert len(was_running) == 8  # the eight long first jobs held all eight slots
    assert {job.max_attempts for job in was_running} == {1, 2}

    started: list[str] = []
    svc = SlotService(store=f"sqlite:///{db}", jobs=JobSettings(poll_s=0.05))
    svc.configure_queue("work", limit=1, paused=True)  # overrides the stored config: look before anything runs

    @svc.task("nap", queue="work")
    async def nap(seconds: float, tag: str) -> str:
        started.append(tag)
        return tag

    async with svc:
        after = {job.id: job for job in (await svc.list_jobs(limit=1000)).jobs}
        for job in was_running:
            recovered = after[job.id]
            expected = JobState.queued if job.max_attempts == 2 else JobState.interrupted
            assert recovered.state is expected, (job.id, recovered.state)
            assert recovered.error is not None and "interrupted" in recovered.error
        queued = sorted((job for job in after.values() if job.state is JobState.queued), key=lambda job: job.seq)
        assert len(queued) == len(before) - 4  # only the four single-attempt runners ended

        await svc.resume("work")
        await wait_until(lambda: len(started) == len(queued), timeout=60, what="every queued job run")
        assert started == [job.args[1] for job in queued]  # in their order, each once
        page = await svc.list_jobs(limit=1000)
    assert len(page.jobs) == len(before) and page.next_cursor is None
    assert sorted(job.state.value for job in page.jobs if job.state is not JobState.succeeded) == ["interrupted"] * 4
