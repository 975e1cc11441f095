"""Cancelling a job that ignores SIGTERM answers at once (`cancelling`, 202); its final state follows as a
job event and `slotdeck cancel --wait` waits past the kill grace for it. No client calls it a connection failure."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from embedded_service.api.auth import create_token
from embedded_service.api.embedded import EmbeddedServer
from embedded_service.client import Client
from embedded_service.jobs import JobSettings
from embedded_service.model import JobState, Role

STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)",
]


@pytest.fixture
def server() -> Iterator[tuple[str, str]]:
    srv = EmbeddedServer("memory://", probes=False, write_local=False, grace_s=0.5, jobs=JobSettings(kill_grace_s=4.0))
    srv.start()
    try:
        yield srv.url, srv.call(create_token(srv.service.store, "op", Role.operator))
    finally:
        srv.stop()


def _running(c: Client, argv: list[str]) -> str:
    job = c.submit_command(argv)
    deadline = time.monotonic() + 30
    while "ready" not in c.job_log(job.id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert c.job(job.id).state is JobState.running
    return job.id


def test_cancelling_a_job_that_ignores_sigterm_answers_cancelling_then_an_event_brings_cancelled(server) -> None:  # type: ignore[no-untyped-def]
    url, token = server
    with Client(url, token, timeout=3.0) as c:  # shorter than the 4 s kill grace: a slow answer would be a failure
        job_id = _running(c, STUBBORN)
        events = c.events(types=["job"])
        answer = c.cancel_job(job_id)
        assert answer.state is JobState.cancelling
        assert c.job(job_id).state is JobState.cancelling
        final = None
        for event in events:
            job = event.data.get("job", {})
            if job.get("id") == job_id and JobState(job["state"]).finished:
                final = JobState(job["state"])
                break
        assert final is JobState.cancelled
        assert c.job(job_id).state is JobState.cancelled


def test_cancel_answers_202_while_stopping(server) -> None:  # type: ignore[no-untyped-def]
    url, token = server
    with Client(url, token) as c:
        job_id = _running(c, STUBBORN)
        response = c._http.post(f"/v1/jobs/{job_id}/cancel")
        assert (response.status_code, response.json()["state"]) == (202, "cancelling")


def test_slotdeck_cancel_wait_prints_the_final_state(server) -> None:  # type: ignore[no-untyped-def]
    url, token = server
    with Client(url, token) as c:
        job_id = _running(c, STUBBORN)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedded_service.cli",
            "cancel",
            job_id,
            "--wait",
            "--url",
            url,
            "--token",
            token,
            "--timeout",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ),
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"{job_id}: cancelled"), done.stderr
