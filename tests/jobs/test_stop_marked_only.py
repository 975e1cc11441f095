"""Stopping a job known only by its marker (a restart after `kill -9`, the job's group already gone): a marked
process that ignores SIGTERM is killed, and the log line that says so is a real line, not a logging error."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import pytest
from jobhelpers import process_gone

from embedded_service.jobs.tracking import MARK_VAR, marked_pids, stop_job_processes

# a process in its own session (not the job's group any more) that ignores SIGTERM, as a daemon of a job might
STUBBORN = (
    "import os, signal, time; os.setsid(); signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(120)"
)


async def test_a_marked_process_that_ignores_sigterm_is_killed_without_a_group(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="slotdeck.jobs.tracking")  # pytest's handler fails on a bad log record
    mark = f"jstubborn{os.getpid()}.1"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUBBORN, env={**os.environ, MARK_VAR: mark}, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
        assert proc.pid in marked_pids([mark])[mark]
        survivors = await stop_job_processes(None, mark, grace_s=0.3)
        await asyncio.wait_for(proc.wait(), 30)
        assert survivors == []
        assert process_gone(proc.pid)
        assert proc.returncode == -9, "SIGTERM was ignored, so only SIGKILL can have stopped it"
        assert any("ignored SIGTERM" in record.getMessage() for record in caplog.records)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
