"""Graceful stop: once draining starts no queued job starts; work stopped by the shutdown is queued again (not
counted as an attempt) and runs on the next start; a task that finished during the drain keeps its real outcome."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from pathlib import Path

import pytest

from embedded_service import SlotService
from embedded_service.model import JobState

from .serving import Serve, home_env, jobs, wait_until


def _job(marks: Path, n: int, seconds: float) -> dict[str, object]:
    script = (
        "import sys, time\n"
        f"open({str(marks)!r}, 'a').write('start {n}\\n')\n"
        f"time.sleep({seconds})\n"
        f"open({str(marks)!r}, 'a').write('end {n}\\n')\n"
    )
    return {"argv": [sys.executable, "-c", script]}


@pytest.mark.parametrize("grace_s", ["30", "0.2"], ids=["work-finishes-in-grace", "work-stopped-by-shutdown"])
def test_sigterm_with_queued_jobs_starts_none_and_all_run_after_restart(tmp_path: Path, grace_s: str) -> None:
    env = home_env(tmp_path / "home")
    marks = tmp_path / "marks.txt"
    server = Serve(env, "--grace-s", grace_s).wait_serving()
    try:
        with server.http() as http:
            assert http.patch("/v1/queues/default", json={"limit": 1}).status_code == 200
            ids = [http.post("/v1/jobs", json=_job(marks, n, s)).json()["id"] for n, s in enumerate((1, 5, 5))]
            wait_until("the first job to start", lambda: marks.exists() and "start 0" in marks.read_text())
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(120) == 0, server.output()
    finally:
        server.kill()
    assert "start 1" not in marks.read_text() and "start 2" not in marks.read_text()  # nothing started while draining

    restarted = Serve(env).wait_serving()
    try:
        with restarted.http() as http:
            wait_until("all three jobs to succeed", lambda: [j["state"] for j in jobs(http)] == ["succeeded"] * 3, 120)
            first = http.get(f"/v1/jobs/{ids[0]}").json()
            assert first["attempts"] == 1  # a stop by the shutdown is not counted as an attempt
            assert first["max_attempts"] == 1
    finally:
        assert restarted.stop() == 0
    text = marks.read_text()
    assert text.count("end 0") == 1 and text.count("end 1") == 1 and text.count("end 2") == 1
    if grace_s == "0.2":
        assert text.count("start 0") == 2  # stopped by the shutdown, then run again in full
    else:
        assert text.count("start 0") == 1  # finished inside the grace period


async def test_a_sync_task_that_finishes_during_the_shutdown_keeps_its_result(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    release = threading.Event()
    svc = SlotService(url)

    @svc.task("answer")
    def answer() -> int:
        release.wait(30)
        return 42

    svc.configure_queue("default", limit=1)
    await svc.start()
    job = await svc.submit("answer")
    while (await svc.get_job(job.id)).state is not JobState.running:
        await asyncio.sleep(0.02)
    closing = asyncio.create_task(svc.close())  # asks the running task to stop; a sync task cannot be interrupted
    await asyncio.sleep(0.2)
    release.set()  # it finishes during the shutdown
    await closing

    again = SlotService(url)
    again.task("answer")(answer)
    again.configure_queue("default", limit=1)
    await again.start()
    try:
        stored = await again.get_job(job.id)
        assert stored.state is JobState.succeeded and stored.result == 42
    finally:
        await again.close()


def test_a_remote_lease_still_held_at_a_graceful_stop_counts_after_the_restart(tmp_path: Path) -> None:
    """SIGTERM is no less safe than kill -9: a remote holder whose work outlives the grace period still runs (it
    hears nothing until its next renew), so its stored lease must count after the restart and accept its renewal,
    instead of being revoked at shutdown and its slot handed to someone else at once (two holders, limit 1)."""
    env = home_env(tmp_path / "home")
    server = Serve(env, "--grace-s", "0.5").wait_serving()
    try:
        with server.http() as http:
            assert http.put("/v1/queues/q", json={"limit": 1}).status_code in (200, 201)
            held = http.post("/v1/queues/q/leases", json={"owner": "A", "ttl_s": 600}).json()["lease"]
        assert server.stop() == 0  # A never released: its work goes on past the grace period
    finally:
        server.kill()
    again = Serve(env).wait_serving()
    try:
        with again.http() as http:
            assert http.get("/v1/queues/q").json()["in_use"] == 1
            other = http.post("/v1/queues/q/leases", json={"owner": "B", "ttl_s": 60, "wait_s": 0})
            assert other.status_code != 201, other.text  # the limit holds: B waits while A holds
            renewed = http.post(f"/v1/leases/{held['id']}/renew", json={})
            assert renewed.status_code == 200 and renewed.json()["fence"] == held["fence"], renewed.text
            assert http.delete(f"/v1/leases/{held['id']}").status_code == 204
        assert again.stop() == 0
    finally:
        again.kill()
