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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from example_apps import stop_group

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "multiworker_web"
TOKEN = "example-operator-token"

pytestmark = pytest.mark.timeout(240)


@contextmanager
def serving(store: str, workers: int, token: str | None = TOKEN) -> Iterator[str]:
    """The README's command on a free port: `uvicorn --app-dir examples/multiworker_web app:app --workers N`,
    yielded once every worker answers (its lifespan ran); stopped with SIGTERM (SIGKILL after 30 s)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "MW_OPERATOR_TOKEN"}
    env.update({"PYTHONPATH": str(APP_DIR.parents[1]), "MW_STORE": store, **({"MW_OPERATOR_TOKEN": token} if token else {})})
    cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(APP_DIR), "app:app", "--workers", str(workers)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        pids: set[int] = set()
        while len(pids) < workers:
            assert proc.poll() is None and time.monotonic() < deadline, f"uvicorn workers up: {len(pids)} of {workers}"
            try:
                pids.add(httpx.get(f"{url}/status", timeout=5).json()["pid"])
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        stop_group(proc)


@pytest.fixture
def web(private_redis: Any) -> Iterator[str]:
    with serving(private_redis.url("mw"), workers=4) as url:
        yield url


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


def test_a_restart_keeps_an_operators_limit_and_without_a_token_the_admin_route_is_off(private_redis: Any) -> None:
    """The README: MW_LIMIT is "used only when the queue does not exist yet, so a restart keeps an operator's
    change", and /admin/limit answers 403 when MW_OPERATOR_TOKEN is unset."""
    store = private_redis.url("mw-restart")
    with serving(store, workers=1) as url:
        assert httpx.get(f"{url}/status", timeout=10).json()["limit"] == 3
        auth = {"Authorization": f"Bearer {TOKEN}"}
        changed = httpx.put(f"{url}/admin/limit", json={"limit": 7}, headers=auth, timeout=10)
        assert changed.status_code == 200, changed.text
    with serving(store, workers=1, token=None) as url:
        assert httpx.get(f"{url}/status", timeout=10).json()["limit"] == 7
        refused = httpx.put(f"{url}/admin/limit", json={"limit": 1}, headers=auth, timeout=10)
        assert refused.status_code == 403
