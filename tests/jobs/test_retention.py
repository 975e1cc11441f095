"""Retention by age in a running service: old finished jobs and their log files go, unfinished ones stay."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from jobhelpers import wait_job

from embedded_service import SlotService, UnknownJob
from embedded_service.jobs import JobSettings
from embedded_service.model import JobState


async def test_finished_jobs_older_than_keep_finished_s_are_pruned_with_their_logs(tmp_path: Path) -> None:
    settings = JobSettings(poll_s=0.05, keep_finished_s=1.0, keep_finished=None, prune_every_s=0.05)
    async with SlotService(store=f"sqlite:///{tmp_path}/keep.db", jobs=settings) as svc:
        svc.configure_queue("default", limit=1)
        svc.configure_queue("held", limit=1, paused=True)
        done = await svc.submit_command([sys.executable, "-c", "print('hi')"])
        waiting = await svc.submit_command([sys.executable, "-c", "print('later')"], queue="held")
        assert (await wait_job(svc, done.id)).state is JobState.succeeded
        log_file = svc.job_log_path(done.id)
        assert log_file is not None and log_file.read_text() == "hi\n"

        assert (await svc.get_job(done.id)).state is JobState.succeeded  # younger than 1 s: still kept
        async with asyncio.timeout(10):
            while True:
                try:
                    await svc.get_job(done.id)
                except UnknownJob:
                    break
                await asyncio.sleep(0.05)
        assert not log_file.exists() and not log_file.with_name(log_file.name + ".1").exists()
        # a queued job is never pruned, however old
        assert (await svc.get_job(waiting.id)).state is JobState.queued
        with pytest.raises(UnknownJob):
            await svc.job_log(done.id)
