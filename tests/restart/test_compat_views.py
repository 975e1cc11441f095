"""`/queue/status` and `/health` keep the meanings of the fields they copy (real server process)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from serving import Server

FAIL_AFTER_1S = [sys.executable, "-c", "import sys, time; time.sleep(1); sys.exit(1)"]


@pytest.mark.timeout(240)
def test_six_failing_jobs_at_limit_2(tmp_path: Path) -> None:
    server = Server(tmp_path / "home", "--default-limit", "2")
    try:
        server.start()
        with server.http() as http:
            for _ in range(6):
                assert http.post("/v1/jobs", json={"argv": FAIL_AFTER_1S}).status_code == 201
            deadline = time.monotonic() + 30
            while (health := http.get("/health").json())["processing_count"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert health == {
                "status": "healthy",
                "max_concurrent": 2,
                "available_slots": 0,
                "processing_count": 2,
                "active_sessions": health["active_sessions"],
            }
            assert http.get("/queue/status").json()["queue_size"] == 4
            deadline = time.monotonic() + 90
            while (status := http.get("/queue/status").json())["total_failed"] < 6:
                assert time.monotonic() < deadline, status
                time.sleep(0.1)
            assert status == {
                "queue_size": 0,
                "max_queue_size": 4,  # the high-water mark, not the configured cap (none)
                "processing": 0,
                "max_processing": 2,  # the peak, which is also the limit here
                "total_processed": 0,
                "total_failed": 6,
                "estimated_wait_time": 0.0,
            }
            assert http.get("/health").json() == {
                "status": "healthy",
                "max_concurrent": 2,
                "available_slots": 2,
                "processing_count": 0,
                "active_sessions": 0,
            }
            assert http.get("/queue/status", params={"queue": "nope"}).status_code == 404
    finally:
        server.stop()
