"""An acquire with `timeout_s` gives up soon after it when the server goes silent (attack on issue 11).

A real server process is stopped with SIGSTOP (it accepts connections in the kernel but never answers). The
caller asked for `timeout_s=2`; it used to block for the whole long-poll (up to 20 s) plus 10 s of slack,
plus, in the blocking client, another 10 s for the withdrawal: 30-40 s. Now the poll's HTTP timeout is cut to
the caller's remaining time + 5 s and the blocking client's withdrawal waits at most 2 s."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from embedded_service.client import AsyncClient, Client, ConnectionFailed

BOUND_S = 20.0  # generous: the new code answers in about 2 + 5 (+ 2) s, the old one in 30 s or more


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def stopped_server(tmp_path: Path) -> Iterator[str]:
    """The URL of a real `slotdeck serve` process, frozen with SIGSTOP once it answered its health check."""
    port = _free_port()
    env = {**os.environ, "SLOTDECK_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "embedded_service.cli", "serve", "--port", str(port), "--no-auth", "--no-probes"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGSTOP)
        yield url
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(30)


def test_a_sync_acquire_gives_up_on_a_silent_server_soon_after_its_timeout(stopped_server: str) -> None:
    with Client(stopped_server) as c:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed):
            c.acquire("default", timeout_s=2, ttl_s=60)
        assert time.monotonic() - started < BOUND_S


async def test_an_async_acquire_gives_up_on_a_silent_server_soon_after_its_timeout(stopped_server: str) -> None:
    async with AsyncClient(stopped_server) as c:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed):
            await c.acquire("default", timeout_s=2, ttl_s=60)
        assert time.monotonic() - started < BOUND_S
        c.timeout = 0.5  # close() waits for the background withdrawal to the frozen server
