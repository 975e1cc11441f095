"""`slotdeck cancel` of a command job that ignores SIGTERM, against a real `slotdeck serve`.

The server answers a job cancel once the job's processes are gone: after its kill grace (10 s) when they ignore
SIGTERM. The CLI used its plain request timeout (`--timeout`, 10 s by default) for that answer, so it reported
"cannot reach SlotDeck" (exit 3) while the cancel went on, although the server was reachable all along.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

SLOTDECK = [sys.executable, "-m", "embedded_service.cli"]
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def serve(home: Path) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    env = {**os.environ, "SLOTDECK_HOME": str(home)}
    local = home / "local.json"
    proc = subprocess.Popen([*SLOTDECK, "serve", "--port", "0", "--grace-s", "1"], env=env, stderr=subprocess.DEVNULL)
    wait_for(local.exists, "the server's local.json")
    endpoint = json.loads(local.read_text())
    http = httpx.Client(base_url=endpoint["url"], headers={"Authorization": f"Bearer {endpoint['token']}"}, timeout=30)
    wait_for(lambda: http.get("/v1/health").status_code == 200, "health")
    return proc, http


def test_cancel_of_a_job_that_ignores_sigterm_waits_for_the_server_instead_of_timing_out(tmp_path: Path) -> None:
    proc, http = serve(tmp_path)
    try:
        job_id = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", STUBBORN]}).json()["id"]
        wait_for(lambda: "ready" in http.get(f"/v1/jobs/{job_id}/log").text, "the job ignoring SIGTERM")
        env = {**os.environ, "SLOTDECK_HOME": str(tmp_path)}
        # --timeout 2 stands for any request timeout shorter than the server's kill grace (10 s)
        done = subprocess.run(
            [*SLOTDECK, "cancel", "--timeout", "2", job_id], env=env, capture_output=True, text=True, timeout=120
        )
        # the server answers at once (`cancelling`, 202) and stops the job after its kill grace
        assert (done.returncode, done.stdout.strip()) == (0, f"{job_id}: cancelling"), done.stderr
        wait_for(lambda: http.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled", "the job to be cancelled")
    finally:
        http.close()
        proc.terminate()
        proc.wait(60)
