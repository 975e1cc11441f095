"""A job's processes that left its process group or session (setsid) are still the job's: cancel stops them
before the slot is freed, and their GPU memory is counted as the job's, not as another program's."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jobhelpers import process_gone, wait_job

from embedded_service import SlotService
from embedded_service.jobs import JobSettings
from embedded_service.model import JobState

SETTINGS = JobSettings(poll_s=0.05, kill_grace_s=1.0)

# the job starts a child that starts a grandchild; the grandchild calls setsid(): a new session and process group,
# so signalling the job's group misses it. The child exits at once, so the grandchild is reparented too.
ESCAPE = """
import os, subprocess, sys, time
grandchild = "import os, time; os.setsid(); print('escaped', os.getpid(), os.getpgid(0), flush=True); time.sleep(120)"
child = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {grandchild!r}])"
subprocess.run([sys.executable, "-c", child])
print('leader', os.getpid(), flush=True)
time.sleep(120)
"""


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[SlotService]:
    service = SlotService(store=f"sqlite:///{tmp_path}/esc.db", jobs=SETTINGS)
    service.configure_queue("default", limit=1)
    async with service:
        yield service


async def logged(svc: SlotService, job_id: str) -> tuple[int, int, int]:
    """(leader pid, escaped pid, escaped pgid) once both lines are in the job's log."""
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        text = await svc.job_log(job_id)
        leader = re.search(r"^leader (\d+)$", text, re.MULTILINE)
        escaped = re.search(r"^escaped (\d+) (\d+)$", text, re.MULTILINE)
        if leader and escaped:
            return int(leader[1]), int(escaped[1]), int(escaped[2])
        await asyncio.sleep(0.02)
    raise AssertionError(f"the job did not log both processes: {await svc.job_log(job_id)!r}")


async def test_cancel_stops_a_grandchild_that_left_the_session_before_the_slot_is_freed(svc: SlotService) -> None:
    job = await svc.submit_command([sys.executable, "-c", ESCAPE])
    leader, escaped, escaped_pgid = await logged(svc, job.id)
    assert escaped_pgid != leader, "the grandchild really left the job's process group"
    assert not process_gone(escaped)
    follower = await svc.submit_command([sys.executable, "-c", "pass"])
    cancelled = await svc.cancel_job(job.id)
    assert cancelled.state is JobState.cancelled
    assert process_gone(escaped), "the setsid grandchild outlived its cancelled job"
    assert process_gone(leader)
    assert not cancelled.survivors
    assert (await wait_job(svc, follower.id)).state is JobState.succeeded


DAEMON = """
import os, subprocess, sys, time
pidfile = sys.argv[1]
grandchild = f"import os, time; os.setsid(); open({pidfile!r} + '.tmp', 'w').write(str(os.getpid())); "
grandchild += f"os.rename({pidfile!r} + '.tmp', {pidfile!r}); time.sleep(120)"
subprocess.run([sys.executable, "-c", f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {grandchild!r}])"])
while not os.path.exists(pidfile):
    time.sleep(0.01)
"""


async def test_a_job_that_exits_leaves_no_setsid_daemon_behind(svc: SlotService, tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    job = await svc.submit_command([sys.executable, "-c", DAEMON, str(pidfile)])
    done = await wait_job(svc, job.id, timeout=30)
    assert done.state is JobState.succeeded
    daemon = int(pidfile.read_text())
    assert process_gone(daemon), "the daemon a finished job left behind still runs"


async def test_the_marker_finds_the_escaped_process() -> None:
    from embedded_service.jobs.tracking import MARK_VAR, marked_pids

    mark = "jtest:0123456789abcdef"
    code = "import os, time; os.setsid(); time.sleep(60)"
    env = {**__import__("os").environ, MARK_VAR: mark}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=env)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while proc.pid not in marked_pids([mark])[mark]:
            assert asyncio.get_running_loop().time() < deadline, "the marked process was not found"
            await asyncio.sleep(0.02)
        assert marked_pids(["jother:0"]) == {"jother:0": set()}
    finally:
        proc.kill()
        await proc.wait()
    assert proc.pid not in marked_pids([mark])[mark]


def test_a_restart_after_kill_9_stops_the_jobs_setsid_grandchild_too(tmp_path: Path) -> None:
    """The service is killed while a job runs; its grandchild left the job's session. The restarted service
    finds it by the job's marker and stops it with the group, so it keeps no GPU memory and the job does not
    run twice beside it."""
    import os
    import signal

    import psutil
    from test_orphans import serve, wait_for

    pidfile = tmp_path / "escaped.pid"
    script = DAEMON + "time.sleep(600)\n"  # the leader stays, the grandchild is in its own session
    proc, http = serve(tmp_path)
    try:
        job_id = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", script, str(pidfile)]}).json()["id"]
        wait_for(pidfile.exists, "the grandchild's pid file")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        http.close()
        proc.kill()
    escaped = psutil.Process(int(pidfile.read_text()))
    assert escaped.is_running() and os.getpgid(escaped.pid) == escaped.pid, "it leads its own group"

    proc, http = serve(tmp_path)
    try:
        wait_for(lambda: not escaped.is_running() or escaped.status() == psutil.STATUS_ZOMBIE, "the grandchild stopped")
        assert http.get(f"/v1/jobs/{job_id}").json()["state"] == "interrupted"
    finally:
        http.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
