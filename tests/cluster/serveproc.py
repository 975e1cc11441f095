"""Real `slotdeck serve --store redis://...` processes for cluster tests, and a reader of their SSE streams."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from redisproc import free_port


class Serve:
    """One `slotdeck serve` on `store` with its own SLOTDECK_HOME; `auth`: tokens on (an admin client)."""

    def __init__(self, store: str, home: Path, auth: bool = False) -> None:
        self.store, self.home, self.auth = store, home, auth
        self.proc: subprocess.Popen[str] | None = None
        self.client = httpx.Client()
        self.url = ""

    def start(self) -> Serve:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTDECK_", "MAX_CONCURRENT"))}
        env |= {"SLOTDECK_HOME": str(self.home), "SLOTDECK_STORE": self.store}
        argv = [sys.executable, "-m", "embedded_service.cli", "serve", "--port", str(port), "--no-probes"]
        self.proc = subprocess.Popen(
            [*argv, *([] if self.auth else ["--no-auth"])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.client.close()
        self.client = httpx.Client(base_url=self.url, timeout=10)
        return self

    def wait_ready(self, timeout_s: float = 30) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, self.proc.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "server did not start"
            try:
                if self.client.get("/v1/health").status_code in (200, 401):
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        while self.auth and not (self.home / "local.json").exists():
            assert time.monotonic() < deadline, "no local admin token written"
            time.sleep(0.05)
        if self.auth:
            self.client.headers["Authorization"] = f"Bearer {self.admin_token}"

    @property
    def admin_token(self) -> str:
        return str(json.loads((self.home / "local.json").read_text())["token"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> str:
        """SIGTERM; returns its output once it exited (cleanly: status 0, no traceback)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, out
        assert "Traceback" not in out, out
        self.proc = None
        return out

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_all(servers: list[Serve]) -> None:
    for server in servers:
        server.start()
    for server in servers:
        server.wait_ready()


@dataclass(frozen=True)
class Frame:
    id: str | None
    event: str
    data: dict[str, object]


class Reader:
    """Reads `count` frames of one server's `/v1/events` in a thread (then hangs up): `frames()` waits for them.

    `opened` is set once the server answered (the stream is subscribed)."""

    _pool = ThreadPoolExecutor(max_workers=8)

    def __init__(
        self, url: str, count: int, types: str = "lease", last_id: str | None = None, token: str | None = None
    ) -> None:
        self.opened = threading.Event()
        headers = {"Last-Event-ID": last_id} if last_id else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._got: list[Frame] = []
        self._future: Future[list[Frame]] = self._pool.submit(self._read, f"{url}/v1/events?types={types}", count, headers)
        assert self.opened.wait(10) or self._future.done(), "the event stream did not open"
        if self._future.done():
            self._future.result()  # raises what went wrong

    def _read(self, url: str, count: int, headers: dict[str, str]) -> list[Frame]:
        timeout = httpx.Timeout(10, read=30)
        with httpx.stream("GET", url, headers=headers, timeout=timeout) as answer:
            assert answer.status_code == 200, answer.read()
            self.opened.set()
            fields: dict[str, str] = {}
            for line in answer.iter_lines():
                if line.startswith(":"):
                    continue
                if line:
                    key, _, value = line.partition(": ")
                    fields[key] = value
                    continue
                if "event" in fields:
                    self._got.append(Frame(fields.get("id"), fields["event"], json.loads(fields["data"])))
                    if len(self._got) >= count:
                        break
                fields = {}
        return list(self._got)

    def first(self, count: int, timeout_s: float = 20) -> list[Frame]:
        """The first `count` frames, once read (the reader goes on)."""
        deadline = time.monotonic() + timeout_s
        while len(self._got) < count:
            if self._future.done():
                self._future.result()
            assert time.monotonic() < deadline, f"only {len(self._got)} frames came: {self._got}"
            time.sleep(0.02)
        return self._got[:count]

    def frames(self, timeout_s: float = 20) -> list[Frame]:
        """The frames read; AssertionError naming what came when fewer came in time."""
        try:
            return self._future.result(timeout_s)
        except TimeoutError:
            raise AssertionError(f"only {len(self._got)} frames came: {self._got}") from None
