"""A restart after `kill -9` of a real `slotdeck serve` stops the orphaned jobs of ALL its running jobs together.

Each orphan that ignores SIGTERM gets the kill grace (10 s) before SIGKILL. One after the other, N such jobs
kept a GPU box's server from answering for N x 10 s after the restart (8 training jobs: over 80 s, every CLI
call "cannot reach"). Proven by order, not by time: each orphan records, when its SIGTERM arrives, whether the
other orphan is still alive; stopped together, both find the other alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

SLOTDECK = [sys.executable, "-m", "embedded_service.cli"]

# ignores SIGTERM, but notes which sibling orphans (pid files in the same folder) are alive when it arrives
STUBBORN = """
import json, os, signal, sys, time
from pathlib import Path
folder = Path(sys.argv[1])
def alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"
def on_term(*_):
    others = [int(p.stem) for p in folder.glob("*.pid") if int(p.stem) != os.getpid()]
    (folder / f"{os.getpid()}.term").write_text(json.dumps([pid for pid in others if alive(pid)]))
signal.signal(signal.SIGTERM, on_term)
(folder / f"{os.getpid()}.pid").write_text("")
while True:
    time.sleep(1)
"""


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def serve(home: Path) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    env = {**os.environ, "SLOTDECK_HOME": str(home)}
    local = home / "local.json"
    local.unlink(missing_ok=True)
    argv = [*SLOTDECK, "serve", "--port", "0", "--grace-s", "1", "--default-limit", "2", "--no-probes"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    wait_for(local.exists, "the server's local.json", timeout=120)
    endpoint = json.loads(local.read_text())
    http = httpx.Client(base_url=endpoint["url"], headers={"Authorization": f"Bearer {endpoint['token']}"}, timeout=30)
    wait_for(lambda: http.get("/v1/health").status_code == 200, "health")
    return proc, http


def test_a_restart_stops_the_orphans_of_all_running_jobs_together(tmp_path: Path) -> None:
    folder = tmp_path / "orphans"
    folder.mkdir()
    proc, http = serve(tmp_path)
    try:
        for _ in range(2):
            http.post("/v1/jobs", json={"argv": [sys.executable, "-c", STUBBORN, str(folder)]}).raise_for_status()
        wait_for(lambda: len(list(folder.glob("*.pid"))) == 2, "both jobs running")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        http.close()
    orphans = sorted(int(p.stem) for p in folder.glob("*.pid"))

    proc, http = serve(tmp_path)  # local.json appears once the recovery, which stops the orphans, is over
    try:
        wait_for(lambda: len(list(folder.glob("*.term"))) == 2, "both orphans asked to stop")
        seen = {pid: json.loads((folder / f"{pid}.term").read_text()) for pid in orphans}
        assert seen == {orphans[0]: [orphans[1]], orphans[1]: [orphans[0]]}, (
            "an orphan was asked to stop only after the other had been killed: one after the other"
        )
    finally:
        http.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
