"""Real `slotdeck serve` processes on a private SLOTDECK_HOME, and waiting on them without fixed sleeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def home_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTDECK_", "MAX_CONCURRENT"))}
    env["SLOTDECK_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_until(what: str, check: Callable[[], Any], timeout_s: float = 60.0, every_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


class Serve:
    """`slotdeck serve --port 0` in its own process; `url`/`token` from the local.json it writes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.env = env
        self.home = Path(env["SLOTDECK_HOME"])
        self.log = self.home.parent / f"serve-{time.monotonic_ns()}.log"
        self.home.mkdir(parents=True, exist_ok=True)
        self._log_fh = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "embedded_service.cli", "serve", "--port", "0", "--no-probes", *args],
            env=env,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.url = ""
        self.token = ""

    def wait_serving(self, timeout_s: float = 60.0) -> Serve:
        local = self.home / "local.json"

        def ready() -> bool:
            assert self.proc.poll() is None, f"serve exited with {self.proc.returncode}:\n{self.output()}"
            if not local.exists():
                return False
            data = json.loads(local.read_text())
            if data.get("pid") != self.proc.pid:
                return False
            self.url, self.token = data["url"], data["token"]
            return True

        wait_until("the server to serve", ready, timeout_s)
        return self

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def output(self) -> str:
        if not self._log_fh.closed:
            self._log_fh.flush()
        return self.log.read_text()

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log_fh.close()


def jobs(http: httpx.Client) -> list[dict[str, Any]]:
    response = http.get("/v1/jobs", params={"limit": 1000})
    response.raise_for_status()
    return response.json()["jobs"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
