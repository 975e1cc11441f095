"""Helpers to wait for a job or a condition without sleeping blindly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psutil

from embedded_service import SlotService
from embedded_service.model import Job


async def wait_job(svc: SlotService, job_id: str, done: Callable[[Job], bool] | None = None, timeout: float = 15) -> Job:
    """Poll a job until `done(job)` (default: finished) or fail with its last state."""
    check = done or (lambda job: job.state.finished)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await svc.get_job(job_id)
        if check(job):
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} still {job.state} after {timeout}s: {job.error}")
        await asyncio.sleep(0.02)


async def wait_until(predicate: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached after {timeout}s")
        await asyncio.sleep(0.02)


def process_gone(pid: int) -> bool:
    """Exited (a zombie waiting for its reaper has stopped running and holds nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
