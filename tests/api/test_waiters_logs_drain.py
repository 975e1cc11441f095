"""Remote waiters that stop polling, the operator's log lines, and a drain whose grace runs out."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import httpx
import pytest

from embedded_service.api.embedded import EmbeddedServer
from embedded_service.api.logs import JsonFormatter
from embedded_service.model import JobState
from tests.api.conftest import Running


def test_a_waiter_not_polled_within_its_ttl_is_dropped(running: Running) -> None:
    with running.http("client") as c:
        lease = c.post("/v1/queues/default/leases", json={}).json()["lease"]
        waiter = c.post("/v1/queues/default/leases", json={"wait_s": 0, "ttl_s": 1}).json()["waiter"]
        time.sleep(0.6)
        again = c.post("/v1/queues/default/leases", json={"wait_s": 0, "ttl_s": 1, "waiter_id": waiter["id"]})
        assert again.status_code == 202, "a poll within the TTL keeps the place in line"
        time.sleep(0.7)  # 1.3 s after the first poll, 0.7 s after the second
        assert c.get("/v1/snapshot").json()["queues"][0]["waiting"] == 1
        time.sleep(1.0)  # the client went away: no poll within 1 s
        queue = c.get("/v1/snapshot").json()["queues"][0]
        assert (queue["waiting"], queue["totals"]["cancelled"]) == (0, 1)
        late = c.post("/v1/queues/default/leases", json={"wait_s": 0, "waiter_id": waiter["id"]})
        assert late.status_code == 409 and late.json()["code"] == "wait_cancelled"
        assert c.delete(f"/v1/leases/{lease['id']}").status_code == 204
        assert c.get("/v1/snapshot").json()["queues"][0]["in_use"] == 0  # the slot went to nobody


def test_operator_log_lines_name_event_queue_owner_and_ids(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="slotdeck.events")
    with running.http("client") as c, running.http("operator") as op:
        first = c.post("/v1/queues/default/leases", json={"owner": "ann"}).json()["lease"]
        assert c.post("/v1/queues/default/leases", json={"owner": "bob", "timeout_s": 0.2, "wait_s": 2}).status_code == 503
        waiter = c.post("/v1/queues/default/leases", json={"owner": "cy", "wait_s": 0}).json()["waiter"]
        op.post(f"/v1/waiters/{waiter['id']}/cancel")
        op.post(f"/v1/leases/{first['id']}/revoke")
        second = c.post("/v1/queues/default/leases", json={"owner": "dee"}).json()["lease"]
        c.delete(f"/v1/leases/{second['id']}")
    wanted = {
        "granted": ("ann", f"lease={first['id']}"),
        "timed_out": ("bob", "waiter="),
        "waiting": ("cy", f"waiter={waiter['id']}"),
        "cancelled": ("cy", f"waiter={waiter['id']}"),
        "revoked": ("ann", f"lease={first['id']}"),
        "released": ("dee", f"lease={second['id']}"),
    }

    def found(event: str, owner: str, ident: str) -> logging.LogRecord | None:
        return next(
            (
                r
                for r in caplog.records
                if r.name == "slotdeck.events"
                and r.getMessage().startswith(event + " ")
                and f"queue=default owner={owner}" in r.getMessage()
                and ident in r.getMessage()
            ),
            None,
        )

    deadline = time.monotonic() + 5  # the broker logs from the server's loop, a moment later
    while any(found(e, *w) is None for e, w in wanted.items()) and time.monotonic() < deadline:
        time.sleep(0.05)
    missing = [e for e, w in wanted.items() if found(e, *w) is None]
    assert not missing, f"no log line for {missing}: {[r.getMessage() for r in caplog.records]}"
    line = json.loads(JsonFormatter().format(found("revoked", "ann", first["id"])))  # type: ignore[arg-type]
    assert (line["level"], line["event"], line["queue"], line["owner"], line["lease"]) == (
        "info",
        "revoked",
        "default",
        "ann",
        first["id"],
    )


def test_work_still_running_when_the_grace_runs_out_is_kept_or_stopped_and_recorded(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/drain.db"
    server = EmbeddedServer(store, probes=False, write_local=False, grace_s=0.5).start()
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
        http.patch("/v1/queues/default", json={"limit": 2})
        assert http.post("/v1/queues/default/leases", json={"ttl_s": 600}).status_code == 201
        job = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", "import time; time.sleep(60)"]}).json()
        deadline = time.monotonic() + 30
        while http.get(f"/v1/jobs/{job['id']}").json()["state"] != "running":
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
    started = time.monotonic()
    server.stop()  # the lease holder never releases and the command never ends by itself
    assert 0.5 <= time.monotonic() - started < 15
    again = EmbeddedServer(store, probes=False, write_local=False, grace_s=0).start()
    try:
        queue = again.service.snapshot().queues[0]
        # the remote holder's lease was kept and taken back (its holder may still be working: it counts until it
        # renews, releases or expires); the job's was given back when the runner interrupted it
        assert (queue.totals.revoked, queue.totals.released) == (0, 1)
        assert queue.in_use >= 1 and len(again.service.keeper.holders) == 1
        stopped = again.call(again.service.get_job(job["id"]))
        # stopped by the shutdown: queued again (the stop is not an attempt), so it runs again after the restart
        assert stopped.state in (JobState.queued, JobState.running), stopped
        assert stopped.attempts == (0 if stopped.state is JobState.queued else 1)
        assert stopped.finished_at is None and "stopped by a service shutdown" in (stopped.error or "")
    finally:
        again.stop()
