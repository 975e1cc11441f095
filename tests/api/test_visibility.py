"""One visibility rule on every surface: role x surface, for two clients, a viewer and an operator.

Two jobs carry a secret env value (one a client's, one an operator's). No GET
route, no live or replayed event, no history, snapshot, audit entry, metric or
server log line shows a value to anyone; a client sees its own work and none
of another's (not even that it exists).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from embedded_service.api.embedded import EmbeddedServer
from tests.api.conftest import TEST_COMMANDS, Running

SECRET_A = "sk-client-secret-5f1e"
SECRET_OP = "sk-operator-secret-9c2d"
WHO = ("client", "client2", "viewer", "operator")


@pytest.fixture
def served(tmp_path) -> Iterator[Running]:  # type: ignore[no-untyped-def]
    server = EmbeddedServer(
        f"sqlite:///{tmp_path / 'v.db'}",
        probes=False,
        write_local=False,
        grace_s=0.5,
        snapshot_hz=20,
        sample_interval_s=0.1,
        commands=TEST_COMMANDS,
    )
    server.start()
    try:
        yield Running(server)
    finally:
        server.stop()


class Stream(threading.Thread):
    """Reads /v1/events as one token until told to stop; keeps the raw text."""

    def __init__(self, running: Running, who: str, last_event_id: str | None = None) -> None:
        super().__init__(daemon=True)
        self.running, self.who, self.last_event_id = running, who, last_event_id
        self.text: list[str] = []
        self.stop = threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        with self.running.http(self.who) as http, http.stream("GET", "/v1/events", headers=headers) as response:
            assert response.status_code == 200
            self.connected.set()
            for line in response.iter_lines():  # snapshots at 20 Hz keep lines coming
                self.text.append(line)
                if self.stop.is_set():
                    return

    def finish(self) -> str:
        self.stop.set()
        self.join(30)
        assert not self.is_alive()
        return "\n".join(self.text)


def _wait_state(http: httpx.Client, job_id: str, states: tuple[str, ...]) -> None:
    deadline = time.monotonic() + 30
    while http.get(f"/v1/jobs/{job_id}").json()["state"] not in states:
        assert time.monotonic() < deadline, f"job {job_id} never reached {states}"
        time.sleep(0.05)


def _get_surfaces(http: httpx.Client, job_ids: list[str]) -> dict[str, str]:
    paths = [
        "/v1/snapshot",
        "/v1/history?seconds=60",
        "/v1/queues",
        "/v1/queues/default",
        "/v1/jobs",
        "/v1/audit",
        "/metrics",
        "/queue/status",
        "/health",
        "/v1/health",
        "/v1/tokens",
        *(f"/v1/jobs/{j}" for j in job_ids),
        *(f"/v1/jobs/{j}/log" for j in job_ids),
    ]
    return {path: http.get(path).text for path in paths}


def test_no_surface_shows_an_env_value_and_clients_see_only_their_own(
    served: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="slotdeck")
    live = {who: Stream(served, who) for who in WHO}
    for stream in live.values():
        stream.start()
        assert stream.connected.wait(30)
    with served.http("client") as client, served.http("operator") as operator:
        assert operator.patch("/v1/queues/default", json={"limit": 2}).status_code == 200
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
        mine = client.post("/v1/jobs", json={"argv": sleeper, "env": {"API_KEY": SECRET_A}})
        assert mine.status_code == 201 and mine.json()["env"] == {"API_KEY": "***"}, "not even the submitter reads it back"
        job_a = mine.json()["id"]
        theirs = operator.post("/v1/jobs", json={"argv": [sys.executable, "-c", "pass"], "env": {"TOKEN": SECRET_OP}})
        job_op = theirs.json()["id"]
        _wait_state(operator, job_op, ("succeeded",))
        _wait_state(operator, job_a, ("running",))
        # hold the client's job in the snapshot for a few frames, then the operator cancels it (audited)
        time.sleep(0.3)
        assert operator.post(f"/v1/jobs/{job_a}/cancel").status_code == 200
        _wait_state(operator, job_a, ("cancelled",))
        time.sleep(0.3)
    live_text = {who: stream.finish() for who, stream in live.items()}
    boot = next(line for line in live_text["operator"].splitlines() if line.startswith("id: "))[4:].rpartition("-")[0]

    replayed = {}
    for who in WHO:
        stream = Stream(served, who, last_event_id=f"{boot}-0")
        stream.start()
        assert stream.connected.wait(30)
        time.sleep(0.5)
        replayed[who] = stream.finish()

    for who in WHO:
        with served.http(who) as http:
            surfaces = {
                **_get_surfaces(http, [job_a, job_op]),
                "SSE live": live_text[who],
                "SSE replayed (Last-Event-ID)": replayed[who],
            }
        for surface, text in surfaces.items():
            assert SECRET_A not in text and SECRET_OP not in text, f"{who} reads a secret on {surface}"
        # another's job does not exist for a client, anywhere (asked for by id, it is a 404 naming that id)
        if who == "client2":
            for surface, text in surfaces.items():
                if job_a not in surface and job_op not in surface:
                    assert job_a not in text and job_op not in text, f"client2 learns of others' jobs on {surface}"
                elif "/log" not in surface:
                    assert '"code":"unknown_job"' in text
        if who == "client":
            for surface, text in surfaces.items():
                if job_op not in surface:
                    assert job_op not in text, f"a client learns of the operator's job on {surface}"
            for sse in ("SSE live", "SSE replayed (Last-Event-ID)"):
                assert job_a in surfaces[sse] and "API_KEY" in surfaces[sse], f"the client sees its own job on {sse}"
                assert '"action": "job.cancel"' in surfaces[sse], "and the audit entry about its job"
            assert job_a in surfaces["/v1/audit"]
        if who in ("viewer", "operator"):
            for sse in ("SSE live", "SSE replayed (Last-Event-ID)"):
                assert job_a in surfaces[sse] and job_op in surfaces[sse], f"{who} sees every job on {sse}"
                assert '"API_KEY": "***"' in surfaces[sse]
    logged = "\n".join(record.getMessage() + str(getattr(record, "slotdeck", "")) for record in caplog.records)
    assert SECRET_A not in logged and SECRET_OP not in logged


def test_a_clients_snapshot_holds_its_own_leases_and_counts_only_for_others(served: Running) -> None:
    with served.http("client") as a, served.http("client2") as b, served.http("viewer") as viewer:
        assert a.patch("/v1/queues/default", json={}).status_code == 403
        with served.http("operator") as op:
            assert op.patch("/v1/queues/default", json={"limit": 2}).status_code == 200
        lease_a = a.post("/v1/queues/default/leases", json={"owner": "alice-session", "wait_s": 0}).json()["lease"]["id"]
        lease_b = b.post("/v1/queues/default/leases", json={"owner": "bob-session", "wait_s": 0}).json()["lease"]["id"]
        seen_a, seen_b, seen_viewer = (h.get("/v1/snapshot").json() for h in (a, b, viewer))
    assert [lease["id"] for lease in seen_a["leases"]] == [lease_a]
    assert [lease["id"] for lease in seen_b["leases"]] == [lease_b]
    assert {lease["id"] for lease in seen_viewer["leases"]} == {lease_a, lease_b}
    assert seen_a["queues"][0]["in_use"] == 2, "others' work still counts"


def test_a_cancel_by_the_jobs_own_client_is_audited_too(served: Running) -> None:
    with served.http("client") as client, served.http("viewer") as viewer:
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
        job = client.post("/v1/jobs", json={"argv": sleeper, "env": {"K": SECRET_A}}).json()["id"]
        _wait_state(client, job, ("running",))
        assert client.post(f"/v1/jobs/{job}/cancel").status_code == 200
        entries = viewer.get("/v1/audit").json()
    assert next((e["actor"], e["action"], e["target"], e["after"]) for e in entries) == (
        "client",
        "job.cancel",
        job,
        "cancelled",
    )
    assert SECRET_A not in str(entries)
