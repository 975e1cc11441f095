"""Totals never go backwards across kill -9: any total a reader saw is still there after the restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from serving import Server

from embedded_service.client import Client
from embedded_service.errors import SlotDeckError


def granted(server: Server) -> int:
    with server.http() as http:
        snap = http.get("/v1/snapshot").json()
    return next(q["totals"]["granted"] for q in snap["queues"] if q["config"]["name"] == "default")


@pytest.mark.timeout(240)
def test_totals_seen_before_kill_9_are_kept(tmp_path: Path) -> None:
    server = Server(tmp_path / "home", "--default-limit", "2")
    stop = threading.Event()

    def churn() -> None:  # remote acquire/release as fast as it goes
        client = Client(server.url, timeout=5.0, poll_s=1.0)
        while not stop.is_set():
            try:
                with client.slot("default", ttl_s=5.0, timeout_s=10):
                    pass
            except SlotDeckError:
                time.sleep(0.05)

    server.start()
    workers = [threading.Thread(target=churn, daemon=True) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(3):
            seen = granted(server)
            deadline = time.monotonic() + 60
            while granted(server) < seen + 20:  # it moves
                assert time.monotonic() < deadline, "no grants"
            last_seen = granted(server)  # read, then kill at once: nothing gets a second to save it
            server.kill9()
            server.start()
            after = granted(server)
            assert after >= last_seen, f"granted went back from {last_seen} to {after}"
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
        server.stop()
