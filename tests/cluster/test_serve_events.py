"""Redis mode: `/v1/events` and `/v1/history` show the whole deployment, the same from every `slotdeck serve`."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redisproc import PrivateRedis
from serveproc import Frame, Reader, Serve, start_all

from embedded_service.cluster.url import parse_cluster_url

STREAM_ID = re.compile(r"^\d+-\d+$")


@pytest.fixture
def trio(ns_url: str, tmp_path: Path) -> Iterator[list[Serve]]:
    servers = [Serve(ns_url, tmp_path / f"home{i}") for i in range(3)]
    try:
        start_all(servers)
        yield servers
        for server in servers:
            if server.proc is not None:
                server.stop()
    finally:
        for server in servers:
            server.cleanup()


def take(server: Serve, ttl_s: float = 30) -> str:
    answer = server.client.post("/v1/queues/default/leases", json={"ttl_s": ttl_s, "wait_s": 0})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["lease"]["id"])


def give_back(server: Serve, lease_id: str) -> None:
    assert server.client.delete(f"/v1/leases/{lease_id}").status_code == 204


def what(frames: list[Frame]) -> list[tuple[object, object]]:
    return [(f.data["event"], f.data.get("lease") or f.data.get("waiter")) for f in frames]


def test_lease_events_are_the_deployments_with_the_same_ids_everywhere(trio: list[Serve]) -> None:
    a, b, c = trio
    audits = [Reader(s.url, 1, types="audit") for s in (b, c)]
    assert a.client.patch("/v1/queues/default", json={"limit": 2}).status_code == 200
    (audit,) = audits[0].frames()  # an instance's own audit entries reach every instance too
    assert audits[1].frames() == [audit] and audit.data["action"] == "queue.update" and STREAM_ID.match(str(audit.id))
    readers = [Reader(s.url, 4) for s in trio]
    one = take(a)
    give_back(c, one)  # acquired on a, released on c
    short = take(b, ttl_s=1)  # never renewed: the reaper of some instance expires it
    seen = [r.frames() for r in readers]
    assert seen[0] == seen[1] == seen[2]  # same events, same ids, same order
    assert what(seen[0]) == [("granted", one), ("released", one), ("granted", short), ("expired", short)]
    ids = [f.id for f in seen[0]]
    assert all(i is not None and STREAM_ID.match(i) for i in ids)
    keys = [tuple(map(int, str(i).split("-"))) for i in ids]
    assert keys == sorted(keys) and len(set(keys)) == 4
    granted = seen[0][0].data
    assert list(granted) == ["event", "lease", "queue", "owner", "waited_s", "fence"]  # the in-process fields
    assert granted["queue"] == "default" and isinstance(granted["fence"], int)


def test_a_client_resumes_on_another_instance_and_after_a_restart(trio: list[Serve], ns_url: str) -> None:
    a, b, c = trio
    everything = Reader(a.url, 8)
    part = Reader(b.url, 2)
    first = take(a)
    give_back(a, first)
    read = part.frames()  # b's client read two events, then left
    assert what(read) == [("granted", first), ("released", first)]
    for _ in range(2):
        give_back(b, take(c))
    missed = everything.first(6)[2:6]
    resumed = Reader(c.url, 6, last_id=read[-1].id)  # resumes on c: what it missed, then live ones
    last = take(b)
    give_back(a, last)
    got = resumed.frames()
    full = everything.frames()
    assert got[:4] == missed  # exactly what it missed: same ids and data, nothing twice
    assert got[4:] == full[6:8] and what(got[4:]) == [("granted", last), ("released", last)]

    c.stop()  # an instance restarts: its successor has no memory of the events, Redis has
    c.start().wait_ready()
    again = Reader(c.url, 4, last_id=full[3].id)
    assert again.frames() == full[4:8]


def test_history_is_the_same_everywhere_and_goes_on_when_its_writer_dies(trio: list[Serve], ns_url: str) -> None:
    held = take(trio[0])

    def histories(servers: list[Serve]) -> list[dict[str, object]]:
        return [s.client.get("/v1/history", params={"seconds": 600}).json() for s in servers]

    deadline = time.monotonic() + 20
    while True:  # a point may land between two reads: read again until all three answered the same
        shown = histories(trio)
        if len(shown[0]["t"]) >= 3 and shown[0] == shown[1] == shown[2]:  # type: ignore[arg-type]
            break
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    assert 1 in shown[0]["queues"]["default"]["in_use"]  # type: ignore[index]

    parsed = parse_cluster_url(ns_url)
    r = redis.Redis.from_url(parsed.redis_url, decode_responses=True)
    writer_pid = int(str(r.get(f"{parsed.prefix}:hist:lead")).split(":")[1])
    writer = next(s for s in trio if s.pid == writer_pid)
    others = [s for s in trio if s is not writer]
    writer.kill()  # kill -9: it cannot resign
    killed_at = r.time()
    dead_at = killed_at[0] + killed_at[1] / 1e6
    deadline = time.monotonic() + 15
    while True:  # another instance writes within a few seconds
        later = [t for t in histories(others)[0]["t"] if t > dead_at]  # type: ignore[attr-defined]
        if len(later) >= 2:
            break
        assert time.monotonic() < deadline, "history stopped after its writer died"
        time.sleep(0.2)
    assert int(str(r.get(f"{parsed.prefix}:hist:lead")).split(":")[1]) in {s.pid for s in others}
    deadline = time.monotonic() + 10
    while (shown := histories(others))[0] != shown[1]:
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    r.close()
    give_back(others[0], held)


def test_a_client_token_sees_only_its_own_lease_events_on_any_instance(ns_url: str, tmp_path: Path) -> None:
    servers = [Serve(ns_url, tmp_path / f"home{i}", auth=True) for i in range(2)]
    try:
        start_all(servers)
        a, c = servers
        tokens = {}
        for server, name in ((a, "alice"), (c, "bob")):  # tokens are each instance's own in redis mode
            made = server.client.post("/v1/tokens", json={"name": name, "role": "client"})
            assert made.status_code == 201, made.text
            tokens[name] = made.json()["token"]
        assert a.client.patch("/v1/queues/default", json={"limit": 2}).status_code == 200
        alice_sees = Reader(a.url, 2, token=tokens["alice"])
        staff_sees = Reader(c.url, 4, token=c.admin_token)  # an admin's view, on the other instance
        as_bob = httpx.Client(base_url=c.url, headers={"Authorization": f"Bearer {tokens['bob']}"}, timeout=10)
        as_alice = httpx.Client(base_url=a.url, headers={"Authorization": f"Bearer {tokens['alice']}"}, timeout=10)
        for client in (as_bob, as_alice):  # bob's first: alice's stream would have them before her own
            got = client.post("/v1/queues/default/leases", json={"ttl_s": 30, "wait_s": 0})
            assert got.status_code == 201, got.text
            assert client.delete(f"/v1/leases/{got.json()['lease']['id']}").status_code == 204
        bobs, alices = (f.data["lease"] for f in staff_sees.frames()[::2])
        assert what(alice_sees.frames()) == [("granted", alices), ("released", alices)]
        replayed = Reader(a.url, 2, token=tokens["alice"], last_id="0-0").frames()  # all that is kept, filtered
        assert what(replayed) == [("granted", alices), ("released", alices)] and bobs != alices
        as_bob.close()
        as_alice.close()
        for server in servers:
            server.stop()
    finally:
        for server in servers:
            server.cleanup()


def test_the_event_reader_reconnects_after_redis_restarts(tmp_path: Path) -> None:
    redis_server = PrivateRedis(tmp_path / "redis", aof=True)
    (tmp_path / "redis").mkdir()
    redis_server.start()
    server = Serve(redis_server.url("restarts"), tmp_path / "home")
    try:
        start_all([server])
        reader = Reader(server.url, 4)
        give_back(server, before := take(server))
        assert what(reader.first(2)) == [("granted", before), ("released", before)]
        redis_server.kill9()  # its connections drop; the data stays (append-only file)
        redis_server.start()
        deadline = time.monotonic() + 30
        while (answer := server.client.post("/v1/queues/default/leases", json={"wait_s": 0})).status_code != 201:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
        give_back(server, after := answer.json()["lease"]["id"])
        assert what(reader.frames(30)[2:]) == [("granted", after), ("released", after)]
        server.stop()
    finally:
        server.cleanup()
        redis_server.stop()
