"""A job's child that left its session AND emptied its environment (`setsid env -i ...`) carries neither the
job's process group nor its marker. Cancel still stops it while the job's leader is alive to name it: the
leader's descendants are the job's too. Before, it ran on after the cancel, and the job reported nothing."""

from __future__ import annotations

import sys
from pathlib import Path

from jobhelpers import process_gone, wait_until

from embedded_service import SlotService
from embedded_service.jobs import JobSettings
from embedded_service.model import JobState

SETTINGS = JobSettings(poll_s=0.05, kill_grace_s=1.0)

LEADER = """
import subprocess, sys, time
child = "import os, sys, time; open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); "
child += "os.rename(sys.argv[1] + '.tmp', sys.argv[1]); time.sleep(120)"
subprocess.Popen([sys.executable, "-c", child, sys.argv[1]], env={}, start_new_session=True)
time.sleep(120)
"""


async def test_cancel_stops_a_child_with_an_empty_environment_in_its_own_session(tmp_path: Path) -> None:
    pidfile = tmp_path / "clean.pid"
    async with SlotService(store=f"sqlite:///{tmp_path}/c.db", jobs=SETTINGS) as svc:
        svc.configure_queue("default", limit=1)
        job = await svc.submit_command([sys.executable, "-c", LEADER, str(pidfile)])
        await wait_until(pidfile.exists, what="the child's pid")
        child = int(pidfile.read_text())
        assert "SLOTDECK_JOB_MARK" not in Path(f"/proc/{child}/environ").read_text(errors="replace")
        cancelled = await svc.cancel_job(job.id)
        assert cancelled.state is JobState.cancelled
        try:
            assert process_gone(child), "the child that emptied its environment outlived the cancelled job"
            assert not cancelled.survivors
        finally:
            if not process_gone(child):
                import os
                import signal

                os.kill(child, signal.SIGKILL)
