"""Start, kill -9 and restart a real `slotdeck serve` on a fixed loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTDECK_", "MAX_CONCURRENT"))}
    env["SLOTDECK_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


class Server:
    """`slotdeck serve --no-auth` on one port and data directory, started again after each kill."""

    def __init__(self, home: Path, *args: str, auth: bool = False) -> None:
        self.home = home
        self.auth = auth
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "server.log"
        home.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 60) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "embedded_service.cli",
                    "serve",
                    "--port",
                    str(self.port),
                    "--no-probes",
                    *([] if self.auth else ["--no-auth"]),
                    "--no-local-token",
                    *self.args,
                ],
                env=clean_env(self.home),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"server exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

    def create_token(self, name: str, role: str) -> str:
        """A token made straight in the store (before the server starts)."""
        done = subprocess.run(
            [sys.executable, "-m", "embedded_service.cli", "token", "create", "--role", role, "--name", name],
            env=clean_env(self.home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().split()[-1]

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)
