"""Redis mode: `/v1/events` resumed with a `Last-Event-ID` from the future, garbage, or a Redis that lost its data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from redisproc import PrivateRedis
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


def test_an_open_stream_goes_on_after_redis_restarts_without_its_data(tmp_path: Path) -> None:
    """Redis killed and started again empty (no persistence) while a client streams: the stream, the server's
    reader of the Redis stream, and a client resuming from an id of the lost stream all see the new events."""
    redis = PrivateRedis(tmp_path)
    redis.start()
    server = Serve(redis.url("lost"), tmp_path / "home")
    try:
        server.start().wait_ready()
        old = take(server)
        reader = Reader(server.url, 2)
        (last_id,) = {r.frames()[0].id for r in resumes(server, "0-0")}  # leaves the server's pool a few connections
        redis.kill9()
        redis.start()
        deadline = time.monotonic() + 20
        while server.client.get("/v1/health").json()["status"] != "ok":
            assert time.monotonic() < deadline, "the server did not see Redis again"
            time.sleep(0.1)
        limit_eventually(server)
        first = take(server)
        resumed = resumes(server, str(last_id))  # at once: they draw pooled connections that died with the old Redis
        second = take(server)
        assert [f.data["lease"] for f in reader.frames()] == [first, second] and old not in (first, second)
        assert [[f.data["lease"] for f in r.frames()] for r in resumed] == [[first]] * 6
        server.stop()
    finally:
        server.cleanup()
        redis.stop()


def resumes(server: Serve, last_id: str, count: int = 6) -> list[Reader]:
    """`count` readers of one frame after `last_id`, opened at once."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: Reader(server.url, 1, last_id=last_id), range(count)))


def limit_eventually(server: Serve) -> None:
    """Room for a few leases once the restarted Redis knows the queue again (the server publishes it anew)."""
    deadline = time.monotonic() + 20
    while (answer := server.client.patch("/v1/queues/default", json={"limit": 5})).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
