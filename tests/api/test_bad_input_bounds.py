"""Input at the edges gets a clear 4xx problem, never a 500 or a spinning queue; logs cannot be forged;
a filtered event stream stays visibly alive."""

from __future__ import annotations

import logging

import httpx
import pytest

from embedded_service.api import events as events_module
from embedded_service.api.embedded import EmbeddedServer
from embedded_service.api.logs import configure_logging
from tests.api.conftest import Running


@pytest.mark.parametrize("path", ["/v1/jobs?cursor=9223372036854775808", "/v1/jobs?cursor=99999999999999999999999"])
def test_a_cursor_beyond_64_bits_is_a_422(running: Running, path: str) -> None:
    with running.http("operator") as op:
        answer = op.get(path)
        assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("before", ["9223372036854775808", "99999999999999999999999"])
def test_an_audit_before_id_beyond_64_bits_is_a_422(running: Running, before: str) -> None:
    with running.http("operator") as op:
        assert op.get(f"/v1/audit?before_id={before}").status_code == 422


def test_an_acquire_body_nested_1000_deep_is_a_422(running: Running) -> None:
    with running.http("client") as c:
        body = '{"owner": ' + "[" * 1000 + "]" * 1000 + "}"
        answer = c.post("/v1/queues/default/leases", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, answer.text
        assert c.get("/v1/health").status_code == 200


@pytest.mark.parametrize("rate", ["5e-324", "Infinity", "NaN", "-Infinity", "1e400", "0"])
def test_a_rate_outside_a_sane_range_or_not_finite_is_a_422(running: Running, rate: str) -> None:
    with running.http("operator") as op:
        body = '{"limit": 1, "rate": ' + rate + "}"
        put = op.put("/v1/queues/rated", content=body, headers={"Content-Type": "application/json"})
        assert put.status_code == 422, put.text
        op.put("/v1/queues/rated", json={"limit": 1})
        patch = op.patch("/v1/queues/rated", content='{"rate": ' + rate + "}", headers={"Content-Type": "application/json"})
        assert patch.status_code == 422, patch.text


@pytest.mark.parametrize("field", ["ttl_s", "timeout_s", "wait_s"])
def test_non_finite_numbers_in_an_acquire_are_a_422(running: Running, field: str) -> None:
    with running.http("client") as c:
        for value in ("NaN", "Infinity"):
            body = '{"' + field + '": ' + value + "}"
            answer = c.post("/v1/queues/default/leases", content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 422, (field, value, answer.text)


def test_a_newline_in_an_owner_cannot_forge_a_log_line() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).handlers[:] for n in ("uvicorn", "uvicorn.error")}
    try:
        configure_logging("INFO")  # the server's own text log format
        formatter = root.handlers[0].formatter
    finally:
        root.handlers[:], level, uvicorn = saved
        root.setLevel(level)
        for name, handlers in uvicorn.items():
            logging.getLogger(name).handlers[:] = handlers
    assert formatter is not None
    forged = ("x\nFAKE ERROR root: pwned",)
    record = logging.LogRecord("slotdeck.events", logging.INFO, __file__, 1, "granted owner=%s", forged, None)
    line = formatter.format(record)
    assert "\n" not in line and "\\nFAKE ERROR" in line


def test_a_filtered_event_stream_gets_keep_alives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "KEEPALIVE_S", 0.3)  # instead of 10 s: the test need not wait that long
    server = EmbeddedServer("memory://", probes=False, write_local=False, auth=False, grace_s=0.5)
    server.start()
    try:
        comments = 0
        with (
            httpx.Client(base_url=server.url, timeout=10) as viewer,
            viewer.stream("GET", "/v1/events", params={"types": "audit"}) as stream,
        ):
            for line in stream.iter_lines():
                comments += line.startswith(":")
                if comments >= 2:
                    break
        assert comments >= 2
    finally:
        server.stop()
