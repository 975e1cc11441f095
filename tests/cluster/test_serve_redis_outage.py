"""A `slotdeck serve --store redis://...` whose Redis goes away (kill -9) says so: `/v1/health` names the
fault, routes that need Redis answer 503 `store_failing` (never a bare 500), and it is `ok` again once
Redis answers."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from redisproc import PrivateRedis
from test_serve_redis import serve


def eventually(what: str, check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def health(client: httpx.Client) -> dict[str, Any] | None:
    try:
        answer = client.get("/v1/health")
    except httpx.TransportError:
        return None
    return answer.json() if answer.status_code == 200 else None


def test_a_server_whose_redis_is_killed_says_so_and_recovers(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    proc, client = serve(redis.url("outage"), tmp_path / "home", auth=True)
    try:
        eventually("the server to start", lambda: proc.poll() is not None or health(client))
        assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
        local = tmp_path / "home" / "local.json"
        eventually("local.json", local.exists)
        token = json.loads(local.read_text())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert health(client)["status"] == "ok"  # type: ignore[index]

        redis.kill9()
        failing = eventually("/v1/health to name the fault", lambda: (h := health(client)) and h["status"] != "ok" and h)
        assert failing["status"] == "store_failing" and failing["store_ok"] is False, failing
        assert failing["store_fault"] == "redis unreachable", failing
        for path, headers in (("/v1/snapshot", auth), ("/metrics", auth), ("/v1/whoami", auth)):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 503 and answer.json()["code"] == "store_failing", (path, answer.text)
        compat = client.get("/health")
        assert compat.status_code == 200 and compat.json()["status"] == "store_failing", compat.text

        redis.start()  # same port, no data: the server's own local token is gone with it (documented)
        eventually("/v1/health to be ok again", lambda: (h := health(client)) and h["status"] == "ok")
        assert client.get("/health").json()["status"] == "healthy"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert out.count("redis unreachable") <= 3, out  # logged once per spell, not at every refresh
        assert "Traceback" not in out, out
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        redis.stop()


def test_a_paused_redis_does_not_hang_the_load_balancer_probe(tmp_path: Path) -> None:
    """SIGSTOP: Redis accepts connections but never answers. `/health` (a load balancer's probe) must still
    answer well inside a probe's timeout (10 s here; a stuck read retried would take 30 s) and say why."""
    redis = PrivateRedis(tmp_path)
    redis.start()
    proc, client = serve(redis.url("paused"), tmp_path / "home")
    assert redis.proc is not None
    try:
        eventually("the server to start", lambda: proc.poll() is not None or health(client))
        assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            for _ in range(3):
                compat = client.get("/health", timeout=10)
                assert compat.status_code == 200, compat.text
            assert compat.json()["status"] == "store_failing", compat.text
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        eventually("/health to be healthy again", lambda: client.get("/health").json()["status"] == "healthy")
    finally:
        client.close()
        proc.kill()
        proc.wait(10)
        redis.stop()
