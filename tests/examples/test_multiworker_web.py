"""examples/multiworker_web does what its README promises: four uvicorn workers share one limit of 3
(peak measured by the app = 3), a limit change through any one worker holds on all of them (peak = 5),
and the admin route needs the operator token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from example_apps import stop_group

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "multiworker_web"
TOKEN = "example-operator-token"

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def web(private_redis: Any) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(APP_DIR.parents[1]),
        "MW_STORE": private_redis.url("mw"),
        "MW_OPERATOR_TOKEN": TOKEN,
    }
    cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(APP_DIR), "app:app", "--workers", "4"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        pids: set[int] = set()
        while len(pids) < 4:  # every worker has started (its lifespan ran) and answers
            assert proc.poll() is None and time.monotonic() < deadline, f"uvicorn workers up: {len(pids)} of 4"
            try:
                pids.add(httpx.get(f"{url}/status", timeout=5).json()["pid"])
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        stop_group(proc)


def burst(url: str, n: int) -> list[dict[str, Any]]:
    """n concurrent POST /work?seconds=0.5 on fresh connections (so the kernel spreads them over the workers)."""

    def one(_: int) -> dict[str, Any]:
        answer = httpx.post(f"{url}/work", params={"seconds": 0.5}, timeout=120)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_four_workers_share_one_limit_and_a_change_through_one_holds_on_all(web: str) -> None:
    first = burst(web, 16)
    assert len({a["pid"] for a in first}) >= 2  # the work really was spread over several processes
    assert len({a["fence"] for a in first}) == 16 and not any(a["slot_lost"] for a in first)
    status = httpx.get(f"{web}/status", timeout=10).json()
    assert (status["limit"], status["in_use"], status["waiting"], status["peak_running"]) == (3, 0, 0, 3)

    assert httpx.put(f"{web}/admin/limit", json={"limit": 5}, timeout=10).status_code == 401
    changed = httpx.put(f"{web}/admin/limit", json={"limit": 5}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert changed.status_code == 200, changed.text
    seen: dict[int, int] = {}
    deadline = time.monotonic() + 30
    while len(seen) < 4:  # every worker reports the new limit (the same Redis, no propagation delay)
        assert time.monotonic() < deadline, seen
        status = httpx.get(f"{web}/status", timeout=10).json()
        seen[status["pid"]] = status["limit"]
    assert set(seen.values()) == {5}

    second = burst(web, 25)
    assert len({a["pid"] for a in second}) >= 2
    status = httpx.get(f"{web}/status", timeout=10).json()
    assert (status["limit"], status["in_use"], status["peak_running"]) == (5, 0, 5)
