"""Redis mode: `Last-Event-ID` values a client should not have (from the future, garbage) never silence `/v1/events`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serveproc import Reader, Serve


@pytest.fixture
def server(ns_url: str, tmp_path: Path) -> Iterator[Serve]:
    one = Serve(ns_url, tmp_path / "home").start()
    try:
        one.wait_ready()
        assert one.client.patch("/v1/queues/default", json={"limit": 5}).status_code == 200
        yield one
        one.stop()
    finally:
        one.cleanup()


def take(server: Serve) -> str:
    answer = server.client.post("/v1/queues/default/leases", json={"ttl_s": 30, "wait_s": 0})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["lease"]["id"])


@pytest.mark.parametrize("last_id", ["99999999999999-0", "garbage"])
def test_a_resume_id_newer_than_the_stream_still_gets_live_events(server: Serve, last_id: str) -> None:
    """An id past the stream's newest entry (made up, or kept from a Redis whose clock ran ahead before it lost its
    data) is not a place in this stream: the client gets what is kept and then every new event, as for garbage."""
    before = take(server)
    reader = Reader(server.url, 2, last_id=last_id)
    after = take(server)
    frames = reader.frames()
    assert [(f.data["event"], f.data["lease"]) for f in frames] == [("granted", before), ("granted", after)]
