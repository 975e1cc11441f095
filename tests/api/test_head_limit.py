"""A request head (request line plus headers) larger than 1 MiB gets 431 before it is buffered or authenticated."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

from tests.api.test_cli_and_server import _serve, home  # noqa: F401  (home is a fixture)


def _huge_head(url: str, head_bytes: int) -> int:
    """Send a GET whose one header has `head_bytes` bytes; the status the server answers."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"GET /v1/jobs HTTP/1.1\r\nHost: {parts.netloc}\r\nX-Pad: ".encode())
        block = b"a" * (1 << 20)
        try:
            for _ in range(head_bytes // len(block)):
                sock.sendall(block)
            sock.sendall(b"\r\n\r\n")
        except OSError:  # the server answered and closed: it does not read what it refuses
            pass
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1])


def test_huge_heads_get_431_without_the_server_growing(home: dict[str, str]) -> None:  # noqa: F811
    proc, url = _serve(home)
    try:
        server = psutil.Process(proc.pid)
        before = server.memory_info().rss
        statuses = [_huge_head(url, 100 * 1024 * 1024) for _ in range(3)]
        grown_mib = (server.memory_info().rss - before) / 2**20
        print(f"server RSS grew {grown_mib:.1f} MiB after 3 x 100 MiB unauthenticated headers")
        assert statuses == [431, 431, 431], statuses
        assert grown_mib < 50, f"the server grew {grown_mib:.0f} MiB"
        token = json.loads((Path(home["SLOTDECK_HOME"]) / "local.json").read_text())["token"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}", "X-Pad": "a" * 60_000}) as http:
            assert http.get("/v1/jobs").status_code == 200, "ordinary (even long) heads still pass"
            big = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", "pass"], "env": {"K": "v" * 3_000_000}})
            assert big.status_code == 422, "a big body (read and validated) in the packets of its head is no big head"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
