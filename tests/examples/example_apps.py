"""What the example tests share: wait for an app's /status to show a state, stop an app's process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import httpx


def status_until(url: str, timeout_s: float = 60.0, **want: Any) -> dict[str, Any]:
    """GET {url}/status until every field in `want` has its value; the last status. AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = dict(httpx.get(f"{url}/status", timeout=10).json())
        if all(status[k] == v for k, v in want.items()):
            return status
        assert time.monotonic() < deadline, f"status stayed {status}, wanted {want}"
        time.sleep(0.05)


def stop_group(proc: subprocess.Popen[Any], grace_s: float = 30.0) -> None:
    """SIGTERM the process group `proc` leads (started with start_new_session=True), SIGKILL after `grace_s`."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
