"""kill -9 a real `slotdeck serve` while a command job runs: its process group outlives the service; the
restarted service stops it before recording the job as interrupted, so nothing runs twice or keeps its GPUs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

SLOTDECK = [sys.executable, "-m", "embedded_service.cli"]


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def serve(home: Path) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    env = {**os.environ, "SLOTDECK_HOME": str(home)}
    local = home / "local.json"
    local.unlink(missing_ok=True)
    proc = subprocess.Popen([*SLOTDECK, "serve", "--port", "0", "--grace-s", "1"], env=env, stderr=subprocess.DEVNULL)
    wait_for(local.exists, "the server's local.json")
    endpoint = json.loads(local.read_text())
    http = httpx.Client(base_url=endpoint["url"], headers={"Authorization": f"Bearer {endpoint['token']}"}, timeout=10)
    wait_for(lambda: http.get("/v1/health").status_code == 200, "health")
    return proc, http


def test_restart_after_kill_9_stops_the_orphaned_command(tmp_path: Path) -> None:
    script = "import time\nprint('working', flush=True)\ntime.sleep(600)"
    proc, http = serve(tmp_path)
    try:
        job_id = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", script]}).json()["id"]
        job = wait_for(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["pid"] and j, "the job's process")
        pid = job["pid"]  # type: ignore[index]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        http.close()
        proc.kill()
    orphan = psutil.Process(pid)
    assert orphan.is_running(), "a command job has its own process group: it survives its service"

    proc, http = serve(tmp_path)
    try:
        wait_for(lambda: not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE, "the orphan stopped")
        recovered = http.get(f"/v1/jobs/{job_id}").json()
        assert recovered["state"] == "interrupted"
        assert "interrupted" in recovered["error"]
    finally:
        http.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_only_the_jobs_own_group_counts_as_the_job(tmp_path: Path) -> None:
    from embedded_service.jobs.process import is_job_group

    started = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        assert is_job_group(child.pid, started), "a group started with the job is the job's"
        assert not is_job_group(child.pid, started + 3600), "a group older than the job is someone else's"
        assert not is_job_group(os.getpid(), started), "a process that leads no group of the job's is not it"
        assert not is_job_group(1, started), "init is never a job"
    finally:
        child.kill()
        child.wait()
    assert not is_job_group(child.pid, started), "a group whose leader is gone is not stopped"

