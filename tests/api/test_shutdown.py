"""Graceful stop: no new admissions, waiting clients told plainly, running leases get the grace period."""

from __future__ import annotations

import threading
import time

import httpx

from embedded_service.api.embedded import EmbeddedServer
from embedded_service.client import Client


def test_drain_tells_waiters_and_lets_a_holder_finish_within_grace() -> None:
    server = EmbeddedServer("memory://", probes=False, write_local=False, grace_s=5)
    server.start()
    answers: dict[str, httpx.Response] = {}
    with Client(server.url, server.token) as c:
        lease = c.acquire("default")
        headers = {"Authorization": f"Bearer {server.token}"}
        poll = threading.Thread(
            target=lambda: answers.setdefault(
                "waiter",
                httpx.post(f"{server.url}/v1/queues/default/leases", json={"wait_s": 20}, headers=headers, timeout=30),
            )
        )
        poll.start()
        time.sleep(0.3)
        stopper = threading.Thread(target=server.stop)
        started = time.monotonic()
        stopper.start()
        poll.join(5)
        waiter = answers["waiter"]
        assert waiter.status_code == 503 and waiter.json()["code"] == "shutting_down" and "Retry-After" in waiter.headers
        refused = httpx.post(f"{server.url}/v1/queues/default/leases", json={}, headers=headers)
        assert refused.status_code == 503 and refused.json()["title"] == "Server is shutting down"
        assert httpx.get(f"{server.url}/v1/health").json()["status"] == "draining"
        time.sleep(0.5)
        c.release(lease)  # the running work finishes inside the grace period and can still say so
        stopper.join(10)
    assert time.monotonic() - started < 4  # it stopped once the work was done, not at the end of the grace
    assert server.service.engine.queues["default"].totals().released == 1
    assert server.service.engine.queues["default"].totals().revoked == 0
