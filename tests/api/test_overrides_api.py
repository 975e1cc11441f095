"""The overrides API shape through the HTTP client: `configured`, `overrides`, reset-fields (operator, audited)."""

from __future__ import annotations

from embedded_service.client import AuthError, Client
from tests.api.conftest import Running


def test_overrides_show_reset_and_are_audited(running: Running) -> None:
    with Client(running.url, running.tokens["operator"]) as op, Client(running.url, running.tokens["viewer"]) as viewer:
        op.set_limit("default", 7)
        [queue] = [q for q in viewer.queues() if q.name == "default"]
        assert queue.limit == 7 and queue.overrides["limit"].value == 7 and queue.overrides["limit"].by == "operator"
        assert queue.configured["limit"] != 7
        detail = viewer.queue("default")
        assert detail.overrides["limit"].value == 7 and detail.configured == queue.configured
        try:
            viewer.reset_fields("default", ["limit"])
            raise AssertionError("a viewer reset a field")
        except AuthError as exc:
            assert exc.status == 403
        reset = op.reset_fields("default", ["limit"])
        assert reset.limit == queue.configured["limit"] and reset.overrides == {}
    with running.http("operator") as http:
        bad = http.post("/v1/queues/default/reset-fields", json={"fields": ["name"]})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        assert "unknown queue field 'name'" in bad.json()["detail"]
        empty = http.post("/v1/queues/default/reset-fields", json={"fields": []})
        assert empty.status_code == 422
        missing = http.post("/v1/queues/nope/reset-fields", json={"fields": ["limit"]})
        assert missing.status_code == 404
        actions = [e["action"] for e in http.get("/v1/audit").json()]
    assert actions[:2] == ["queue.reset_fields", "queue.update"]
