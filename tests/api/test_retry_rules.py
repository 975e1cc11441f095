"""`POST /v1/jobs/{id}/retry` answers to the same rules as a submit: env values masked, the allow-list applied again."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from embedded_service.api.auth import create_token
from embedded_service.api.embedded import EmbeddedServer
from embedded_service.model import Role

from .conftest import TEST_COMMANDS


def _server(db: Path, commands=TEST_COMMANDS) -> EmbeddedServer:  # type: ignore[no-untyped-def]
    server = EmbeddedServer(
        f"sqlite:///{db}", probes=False, write_local=False, grace_s=0.5, sample_interval_s=0.1, commands=commands
    )
    return server.start()


def _finished(http: httpx.Client, job_id: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_retry_masks_env_values_and_is_checked_against_todays_allow_list(tmp_path: Path) -> None:
    db = tmp_path / "slotdeck.db"
    first = _server(db)
    try:
        token = first.call(create_token(first.service.store, "alice", Role.client))
        with httpx.Client(base_url=first.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            body = {"argv": [sys.executable, "-c", "print('hi')"], "env": {"API_KEY": "sk-retry-123"}}
            job = http.post("/v1/jobs", json=body).json()
            _finished(http, job["id"])
            again = http.post(f"/v1/jobs/{job['id']}/retry")
            assert again.status_code == 201, again.text
            assert "sk-retry-123" not in again.text and again.json()["env"] == {"API_KEY": "***"}
            _finished(http, again.json()["id"])
    finally:
        first.stop()
    # the admin emptied the allow-list: the same client may no longer run that command by retrying it
    second = _server(db, commands=None)
    try:
        with httpx.Client(base_url=second.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            refused = http.post(f"/v1/jobs/{job['id']}/retry")
            assert refused.status_code == 403, refused.text
    finally:
        second.stop()
