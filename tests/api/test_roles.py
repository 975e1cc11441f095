"""Roles are enforced on every route: viewer reads, client acquires and submits, operator controls, admin manages tokens."""

from __future__ import annotations

import pytest

from tests.api.conftest import Running

# (method, path, body, the least role that may do it)
ROUTES = [
    ("GET", "/v1/snapshot", None, "viewer"),
    ("GET", "/v1/history", None, "viewer"),
    ("GET", "/v1/queues", None, "viewer"),
    ("GET", "/v1/audit", None, "viewer"),
    ("GET", "/metrics", None, "viewer"),
    ("GET", "/queue/status", None, "viewer"),
    ("POST", "/v1/queues/default/leases", {"wait_s": 0}, "client"),
    ("PATCH", "/v1/queues/default", {"limit": 2}, "operator"),
    ("PUT", "/v1/queues/other", {"limit": 2}, "operator"),
    ("POST", "/v1/queues/default/pause", None, "operator"),
    ("POST", "/v1/queues/default/resume", None, "operator"),
    ("POST", "/v1/queues/default/reset-marks", None, "operator"),
    ("GET", "/v1/tokens", None, "admin"),
]
ORDER = ["viewer", "client", "operator", "admin"]


@pytest.mark.parametrize(("method", "path", "body", "least"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_each_role_gets_exactly_what_it_may(running: Running, method: str, path: str, body: dict | None, least: str) -> None:
    with running.http() as anonymous:
        missing = anonymous.request(method, path, json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    with running.http(token="sdk_not-a-real-token") as forged:
        assert forged.request(method, path, json=body).status_code == 401
    for role in ORDER:
        with running.http(role) as http:
            status = http.request(method, path, json=body).status_code
        if ORDER.index(role) < ORDER.index(least):
            assert status == 403, f"{role} must not {method} {path}"
        else:
            assert status < 400, f"{role} may {method} {path} but got {status}"


def test_viewer_cannot_pause_and_client_cannot_change_limits(running: Running) -> None:
    with running.http("viewer") as viewer, running.http("client") as client:
        denied = viewer.post("/v1/queues/default/pause")
        assert denied.status_code == 403 and "viewer" in denied.json()["detail"]
        assert client.patch("/v1/queues/default", json={"limit": 9}).status_code == 403
    with running.http("viewer") as viewer:
        assert viewer.get("/v1/queues").json()[0]["limit"] == 1 and viewer.get("/v1/audit").json() == []


def test_health_is_open(running: Running) -> None:
    with running.http() as anonymous:
        assert anonymous.get("/v1/health").status_code == 200
        assert anonymous.get("/health").status_code == 200
