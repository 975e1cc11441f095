"""Three `slotdeck serve --store redis://...` processes on one private Redis are one admission domain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redisproc import free_port


def serve(
    store: str, home: Path, *flags: str, auth: bool = False, **env_extra: str
) -> tuple[subprocess.Popen[str], httpx.Client]:
    """A `slotdeck serve` on a free loopback port (more `flags` and `SLOTDECK_*` variables in `env_extra`; with
    `auth` its local token is in local.json)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTDECK_", "MAX_CONCURRENT"))}
    env |= {"SLOTDECK_HOME": str(home), "SLOTDECK_STORE": store, **env_extra}  # the store from the environment
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedded_service.cli", "serve", "--port", str(port), "--no-probes", *flags]
        + ([] if auth else ["--no-auth"]),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)


@pytest.fixture
def servers(ns_url: str, tmp_path: Path) -> Iterator[list[httpx.Client]]:
    yield from running([serve(ns_url, tmp_path / f"home{i}") for i in range(3)])


def wait_healthy(started: list[tuple[subprocess.Popen[str], httpx.Client]], timeout_s: float = 30) -> None:
    """Until every server answers /v1/health (a server that exits fails with its output)."""
    deadline = time.monotonic() + timeout_s
    for proc, client in started:
        while True:
            assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "server did not start"
            try:
                if client.get("/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)


def running(started: list[tuple[subprocess.Popen[str], httpx.Client]]) -> Iterator[list[httpx.Client]]:
    """Wait until every server answers, yield their clients, then stop them (SIGTERM: a clean exit, no traceback)."""
    try:
        wait_healthy(started)
        yield [client for _, client in started]
        for proc, _ in started:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in started:
            out, _ = proc.communicate(timeout=20)
            assert proc.returncode == 0, out
            assert "Traceback" not in out
    finally:
        for proc, client in started:
            client.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def lease(client: httpx.Client, **body: object) -> httpx.Response:
    return client.post("/v1/queues/default/leases", json={"ttl_s": 30, "wait_s": 0, **body})


def views(clients: list[httpx.Client]) -> list[tuple[object, ...]]:
    """What each server shows of the default queue: snapshot and both compatibility views."""
    shown = []
    for client in clients:
        (q,) = client.get("/v1/snapshot").json()["queues"]
        status = client.get("/queue/status").json()
        health = client.get("/health").json()
        shown.append(
            (
                (q["in_use"], q["config"]["limit"], q["waiting"], q["marks"]["in_use"], q["totals"]["granted"]),
                (status["processing"], status["queue_size"], status["max_processing"]),
                (health["max_concurrent"], health["available_slots"], health["processing_count"]),
            )
        )
    return shown


def test_three_servers_share_leases_limits_and_views(servers: list[httpx.Client]) -> None:
    a, b, c = servers
    instances = c.get("/v1/snapshot").json()["instances"]  # every server of the deployment, seen from any
    assert len({i["pid"] for i in instances}) == 3 and all(i["version"] and not i["stale"] for i in instances)
    jobs = a.post("/v1/jobs", json={"argv": ["true"]})
    assert (jobs.status_code, jobs.json()["code"]) == (409, "not_in_redis_mode")  # jobs are off, said plainly
    assert "--job-store" in jobs.json()["detail"]  # ... with the way to turn them on
    first = lease(a)
    assert first.status_code == 201, first.text
    waiting = lease(c)
    assert waiting.status_code == 202  # limit 1 (the default queue's default), held through a
    assert c.post(f"/v1/waiters/{waiting.json()['waiter']['id']}/cancel").status_code == 200  # out of line
    assert b.delete(f"/v1/leases/{first.json()['lease']['id']}").status_code == 204  # released through b
    assert b.post(f"/v1/leases/{first.json()['lease']['id']}/renew").status_code == 410  # gone everywhere

    assert c.patch("/v1/queues/default", json={"limit": 2}).status_code == 200
    one, two = lease(a), lease(b)
    assert (one.status_code, two.status_code) == (201, 201), (one.text, two.text)
    third = lease(c, wait_s=0.5)
    assert third.status_code == 202  # the limit of 2 changed through c holds on a and b
    waiter_id = third.json()["waiter"]["id"]
    assert b.post(f"/v1/leases/{one.json()['lease']['id']}/renew", json={"ttl_s": 30}).status_code == 200

    expected = [((2, 2, 1, 2, 3), (2, 1, 2), (2, 0, 2))] * 3
    deadline = time.monotonic() + 10
    while (shown := views(servers)) != expected:
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)

    assert a.delete(f"/v1/leases/{two.json()['lease']['id']}").status_code == 204  # b's lease, released on a
    granted = lease(c, waiter_id=waiter_id, wait_s=10)
    assert granted.status_code == 201, granted.text  # the waiter on c gets the slot
    assert granted.json()["lease"]["fence"] > two.json()["lease"]["fence"]
    for held in (one, granted):
        assert c.delete(f"/v1/leases/{held.json()['lease']['id']}").status_code == 204
    deadline = time.monotonic() + 10
    while {s[0][0] for s in views(servers)} != {0}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
