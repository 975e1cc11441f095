"""`SlotService("redis://...", job_store=...)`: a job starts only with its queue's global slot, and stops without it."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from embedded_service import SlotService
from embedded_service.errors import NotInRedisMode, StoreLocked
from embedded_service.model import Job, JobState


@pytest.fixture
async def pair(ns_url: str, tmp_path: Path) -> AsyncIterator[tuple[SlotService, SlotService]]:
    """`owner` runs jobs from its SQLite store; `other` only admits (no job store), on the same deployment."""
    other = SlotService(ns_url)
    other.configure_queue("work", limit=1)
    await other.start()
    owner = SlotService(ns_url, job_store=f"sqlite:///{tmp_path / 'jobs.db'}")
    await owner.start()
    try:
        yield owner, other
    finally:
        await owner.close()
        await other.close()


async def until(what: str, check: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def sleeping(seconds: float) -> list[str]:
    return [sys.executable, "-c", f"import time; time.sleep({seconds})"]


async def in_state(svc: SlotService, job: Job, state: JobState) -> bool:
    return (await svc.get_job(job.id)).state is state


async def test_a_job_waits_in_redis_for_its_slot_and_a_cancel_there_never_starts_it(
    pair: tuple[SlotService, SlotService],
) -> None:
    owner, other = pair
    held = await other.acquire("work", timeout_s=5)  # the deployment's only slot, held by another process
    job = await owner.submit_command(sleeping(0.1), queue="work", owner="alice", priority=3)

    async def waits_in_redis() -> bool:
        await other.refresh()
        return [(w.owner, w.priority) for w in other.snapshot().waiters] == [("alice", 3)]

    await until("the job to wait in Redis with its owner and priority", waits_in_redis)
    assert (await owner.get_job(job.id)).state is JobState.queued  # waiting for the global slot is not running
    cancelled = await owner.cancel_job(job.id)
    assert (cancelled.state, cancelled.attempts) == (JobState.cancelled, 0)  # it never started

    async def line_empty() -> bool:
        await other.refresh()
        return not other.snapshot().waiters

    await until("its Redis waiter to leave", line_empty)
    other.release(held)
    second = await owner.submit_command(sleeping(0.1), queue="work")
    await until("a job to run once the slot is free", lambda: in_state(owner, second, JobState.succeeded))
    # an operator's cancel of the job's Redis waiter (from any process) cancels the job
    held = await other.acquire("work", timeout_s=5)
    third = await owner.submit_command(sleeping(0.1), queue="work")

    async def one_waiter() -> bool:
        await other.refresh()
        return len(other.snapshot().waiters) == 1

    await until("the third job to wait in Redis", one_waiter)
    assert await other.cluster.slots.cancel(other.snapshot().waiters[0].id)  # type: ignore[union-attr]
    await until("the job to be cancelled", lambda: in_state(owner, third, JobState.cancelled))
    assert (await owner.get_job(third.id)).attempts == 0
    other.release(held)


async def test_a_running_job_whose_global_slot_is_revoked_is_stopped(pair: tuple[SlotService, SlotService]) -> None:
    owner, other = pair
    job = await owner.submit_command(sleeping(60), queue="work")
    await until("the job to run", lambda: in_state(owner, job, JobState.running))
    running = await owner.get_job(job.id)
    await other.refresh()
    assert [lease.id for lease in other.snapshot().leases] == [running.lease_id]  # its lease is the global one
    assert await other.cluster.slots.revoke(running.lease_id or "")  # type: ignore[union-attr]
    await until("the job to stop", lambda: in_state(owner, job, JobState.cancelled))
    stopped = await owner.get_job(job.id)
    assert stopped.pid is not None and not psutil.pid_exists(stopped.pid)  # its process was stopped, not left running


async def test_one_owner_per_job_store_and_job_store_only_in_redis_mode(ns_url: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with SlotService(ns_url, job_store=url):
        with pytest.raises(StoreLocked):
            await SlotService(ns_url, job_store=url).start()
    with pytest.raises(ValueError, match="redis mode"):
        SlotService(url, job_store=url)
    async with SlotService(ns_url, job_store=url) as svc:
        svc.configure_queue("gpu", limit=1)
        with pytest.raises(NotInRedisMode, match="GPUs"):
            await svc.submit_command(["true"], queue="gpu", gpus=1)
