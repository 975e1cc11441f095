"""Every route of the v1 contract over real HTTP."""

from __future__ import annotations

import json
import threading
import time

import httpx

from tests.api.conftest import Running

PROBLEM = "application/problem+json"


def test_health_needs_no_token_and_says_versions(running: Running) -> None:
    with running.http() as http:
        body = http.get("/v1/health").json()
    assert body["status"] == "ok" and body["version"] and body["store"] == "memory://"


def test_queue_config_routes_and_their_audit(running: Running) -> None:
    with running.http("operator") as op:
        created = op.put("/v1/queues/chat", json={"limit": 3, "max_waiting": 5})
        assert created.status_code == 200 and created.json()["limit"] == 3
        assert op.patch("/v1/queues/chat", json={"limit": 4}).json()["limit"] == 4
        assert op.post("/v1/queues/chat/pause").json()["paused"] is True
        assert op.post("/v1/queues/chat/resume").json()["paused"] is False
        assert op.post("/v1/queues/chat/reset-marks").json()["marks"]["in_use"] == 0
        assert {q["name"] for q in op.get("/v1/queues").json()} == {"default", "chat"}
        assert op.get("/v1/queues/chat").json()["config"]["limit"] == 4
        replaced = op.put("/v1/queues/chat", json={"limit": 2})
        assert replaced.json()["max_waiting"] is None  # PUT replaces: left-out fields take defaults
        assert op.delete("/v1/queues/chat").status_code == 204
        assert op.get("/v1/queues/chat").status_code == 404
        audit = op.get("/v1/audit").json()
    actions = [e["action"] for e in reversed(audit)]
    assert actions == [
        "queue.create",
        "queue.update",
        "queue.pause",
        "queue.resume",
        "queue.reset_marks",
        "queue.replace",
        "queue.delete",
    ]
    update = next(e for e in audit if e["action"] == "queue.update")
    assert update["actor"] == "operator" and update["target"] == "chat"
    assert (update["before"]["limit"], update["after"]["limit"]) == (3, 4)


def test_errors_are_problem_documents(running: Running) -> None:
    with running.http("operator") as op:
        unknown = op.patch("/v1/queues/nope", json={"limit": 1})
        bad = op.patch("/v1/queues/default", json={"limit": -1})
        busy_setup = op.post("/v1/queues/default/leases", json={})
        busy = op.delete("/v1/queues/default")
        no_route = op.get("/v1/nothing-here")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM
    assert unknown.json()["code"] == "unknown_queue"
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "limit"]
    assert busy_setup.status_code == 201
    assert busy.status_code == 409 and busy.json()["title"] == "Queue is busy"
    assert no_route.status_code == 404 and no_route.headers["content-type"] == PROBLEM


def test_acquire_grant_wait_repoll_renew_release(running: Running) -> None:
    with running.http("client") as c:
        first = c.post("/v1/queues/default/leases", json={"ttl_s": 5})
        assert first.status_code == 201
        lease = first.json()["lease"]
        assert lease["owner"] == "client" and lease["expires_at"] > time.time()
        waiting = c.post("/v1/queues/default/leases", json={"wait_s": 0.2, "owner": "bob"})
        assert waiting.status_code == 202
        waiter = waiting.json()["waiter"]
        assert waiter["position"] == 1 and waiter["owner"] == "bob"
        renewed = c.post(f"/v1/leases/{lease['id']}/renew", json={"ttl_s": 20})
        assert renewed.json()["expires_at"] > lease["expires_at"]
        assert c.delete(f"/v1/leases/{lease['id']}").status_code == 204
        assert c.delete(f"/v1/leases/{lease['id']}").status_code == 204  # idempotent
        granted = c.post("/v1/queues/default/leases", json={"wait_s": 2, "waiter_id": waiter["id"]})
        assert granted.status_code == 201 and granted.json()["lease"]["owner"] == "bob"
        assert c.post(f"/v1/leases/{lease['id']}/renew").status_code == 410
        assert c.delete("/v1/leases/Lnever").status_code == 404


def test_timeout_is_503_with_retry_after(running: Running) -> None:
    with running.http("client") as c:
        assert c.post("/v1/queues/default/leases", json={}).status_code == 201
        late = c.post("/v1/queues/default/leases", json={"timeout_s": 0.3, "wait_s": 5})
    assert late.status_code == 503
    assert int(late.headers["Retry-After"]) >= 1
    assert late.json()["code"] == "slot_timeout" and late.json()["queue"] == "default"


def test_full_queue_is_503_at_once(running: Running) -> None:
    with running.http("operator") as op:
        op.patch("/v1/queues/default", json={"max_waiting": 0})
        assert op.post("/v1/queues/default/leases", json={}).status_code == 201
        started = time.monotonic()
        full = op.post("/v1/queues/default/leases", json={"wait_s": 10})
    assert full.status_code == 503 and full.json()["code"] == "queue_full" and "Retry-After" in full.headers
    assert time.monotonic() - started < 5


def test_raised_limit_admits_a_long_polling_client(running: Running) -> None:
    with running.http("client") as c, running.http("operator") as op:
        c.post("/v1/queues/default/leases", json={})
        result: dict[str, httpx.Response] = {}
        poller = threading.Thread(
            target=lambda: result.setdefault("r", c.post("/v1/queues/default/leases", json={"wait_s": 10}))
        )
        poller.start()
        time.sleep(0.3)
        op.patch("/v1/queues/default", json={"limit": 2})
        poller.join(5)
    assert result["r"].status_code == 201


def test_revoke_and_waiter_cancel(running: Running) -> None:
    with running.http("client") as c, running.http("operator") as op:
        lease = c.post("/v1/queues/default/leases", json={}).json()["lease"]
        waiter = c.post("/v1/queues/default/leases", json={"wait_s": 0}).json()["waiter"]
        assert op.post(f"/v1/waiters/{waiter['id']}/cancel").json()["id"] == waiter["id"]
        repoll = c.post("/v1/queues/default/leases", json={"waiter_id": waiter["id"], "wait_s": 1})
        assert repoll.status_code == 409 and repoll.json()["code"] == "wait_cancelled"
        revoked = op.post(f"/v1/leases/{lease['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["id"] == lease["id"]
        gone = c.post(f"/v1/leases/{lease['id']}/renew")
        assert gone.status_code == 410 and gone.json()["reason"] == "revoked"
        assert op.post(f"/v1/leases/{lease['id']}/revoke").status_code == 410
        actions = {e["action"] for e in op.get("/v1/audit").json()}
    assert {"lease.revoke", "waiter.cancel"} <= actions


def test_a_client_cannot_touch_another_clients_lease(running: Running) -> None:
    with running.http("client") as mine, running.http("client2") as theirs:
        lease = mine.post("/v1/queues/default/leases", json={}).json()["lease"]
        assert theirs.post(f"/v1/leases/{lease['id']}/renew").status_code == 403
        assert theirs.delete(f"/v1/leases/{lease['id']}").status_code == 403
        assert mine.delete(f"/v1/leases/{lease['id']}").status_code == 204


def test_snapshot_history_metrics_and_compat_views(running: Running) -> None:
    with running.http("viewer") as v, running.http("client") as c:
        c.post("/v1/queues/default/leases", json={"owner": "alice"})
        c.post("/v1/queues/default/leases", json={"wait_s": 0, "owner": "bob"})
        snap = v.get("/v1/snapshot")
        history = v.get("/v1/history", params={"seconds": 60}).json()
        deadline = time.monotonic() + 10
        while "default" not in history["queues"] and time.monotonic() < deadline:  # sampled after the queue was made
            time.sleep(0.05)
            history = v.get("/v1/history", params={"seconds": 60}).json()
        metrics = v.get("/metrics").text
        status = v.get("/queue/status").json()
        health = httpx.get(f"{running.url}/health").json()
    assert snap.headers["content-type"] == "application/json"
    queue = snap.json()["queues"][0]
    assert (queue["in_use"], queue["waiting"]) == (1, 1)
    assert "default" in history["queues"] and len(history["t"]) >= 1
    assert 'slotdeck_queue_in_use{queue="default"} 1.0' in metrics
    assert 'slotdeck_queue_waiting{queue="default"} 1.0' in metrics
    assert "slotdeck_wait_seconds_bucket" in metrics
    assert status == {
        "queue_size": 1,
        "max_queue_size": 1,
        "processing": 1,
        "max_processing": 1,
        "total_processed": 0,
        "total_failed": 0,
        "estimated_wait_time": status["estimated_wait_time"],
    }
    assert health == {
        "status": "healthy",
        "max_concurrent": 1,
        "available_slots": 0,
        "processing_count": 1,
        "active_sessions": 2,
    }


def _read_events(
    http: httpx.Client, count: int, headers: dict[str, str] | None = None
) -> list[tuple[str | None, str, dict]]:
    events: list[tuple[str | None, str, dict]] = []
    current: dict[str, str] = {}
    with http.stream("GET", "/v1/events", headers=headers or {}) as stream:
        for line in stream.iter_lines():
            if line == "":
                events.append((current.get("id"), current["event"], json.loads(current["data"])))
                current = {}
                if len(events) >= count:
                    break
            else:
                key, _, value = line.partition(": ")
                current[key] = value
    return events


def test_events_stream_snapshots_lease_and_audit_events_and_resumes(running: Running) -> None:
    with running.http("viewer") as v, running.http("operator") as op:
        first = _read_events(v, 1)
        assert first[0][1] == "snapshot" and first[0][2]["queues"][0]["config"]["name"] == "default"
        lease = op.post("/v1/queues/default/leases", json={}).json()["lease"]
        op.patch("/v1/queues/default", json={"limit": 2})
        op.delete(f"/v1/leases/{lease['id']}")
        time.sleep(0.2)
        replay = [e for e in _read_events(v, 4, {"Last-Event-ID": "old-0"}) if e[1] != "snapshot"]
        kinds = [(e[1], e[2].get("event") or e[2].get("action")) for e in replay]
        assert kinds[:3] == [("lease", "granted"), ("audit", "queue.update"), ("lease", "released")]
        after_first = _read_events(v, 3, {"Last-Event-ID": replay[0][0]})
        assert [e[1] for e in after_first if e[1] != "snapshot"][:2] == ["audit", "lease"]


def test_token_routes_are_admin_only_and_never_show_hashes(running: Running) -> None:
    with running.http("admin") as admin, running.http("operator") as op:
        made = admin.post("/v1/tokens", json={"name": "ci", "role": "viewer"})
        assert made.status_code == 201 and made.json()["token"].startswith("sdk_")
        listed = admin.get("/v1/tokens").json()
        assert {"name": "ci", "role": "viewer"}.items() <= next(t for t in listed if t["name"] == "ci").items()
        assert all("token_hash" not in t and "token" not in t for t in listed)
        assert op.get("/v1/tokens").status_code == 403
        with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {made.json()['token']}"}) as ci:
            assert ci.get("/v1/snapshot").status_code == 200
            assert admin.delete("/v1/tokens/ci").status_code == 204
            assert ci.get("/v1/snapshot").status_code == 401
        assert admin.delete("/v1/tokens/ci").status_code == 404
