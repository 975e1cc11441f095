"""Entries of the deployment's event stream: the Lua functions' lease events read back with the in-process
engine's fields, entries bounded in bytes, and what one lease's life puts on the stream of a private Redis."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aredis

from embedded_service.cluster import ClusterSlots
from embedded_service.cluster.events import ENTRY_MAX_BYTES, bounded, decode, stream_key
from embedded_service.cluster.url import parse_cluster_url
from embedded_service.errors import QueueFull


def test_a_lease_entry_reads_as_the_engines_event_for_its_maker_and_staff() -> None:
    fields = {"e": "lease", "n": "granted", "x": "l", "i": "L7", "q": "llm", "o": "", "k": "alice", "ms": "1500", "f": "7"}
    event = decode("1733050000123-4", fields)
    assert (event.key, event.kind, event.staff, event.clients) == ((1733050000123, 4), "lease", True, {"alice"})
    assert json.loads(event.data) == {
        "event": "granted",
        "lease": "L7",
        "queue": "llm",
        "owner": None,
        "waited_s": 1.5,
        "fence": 7,
    }
    ended = decode("1-0", {**fields, "n": "released", "o": "me", "k": ""})
    assert json.loads(ended.data)["held_s"] == 1.5 and ended.clients == frozenset()


def test_an_entry_a_server_wrote_keeps_its_audience() -> None:
    event = decode("5-0", {"e": "audit", "d": '{"action": "token.create"}', "s": "0", "c": '["bob"]'})
    assert (event.kind, event.data, event.staff, event.clients) == ("audit", '{"action": "token.create"}', False, {"bob"})


def test_stream_ids_are_told_from_other_ids() -> None:
    assert stream_key("1733050000123-0") == (1733050000123, 0)
    assert stream_key("a1b2c3d4-17") is None and stream_key("1-2-3") is None and stream_key("9" * 30 + "-0") is None


def test_a_job_event_too_large_for_the_stream_keeps_the_jobs_identity() -> None:
    job = {"id": "j1", "state": "running", "queue": "q", "owner": "alice", "argv": ["x" * ENTRY_MAX_BYTES]}
    small = json.loads(bounded("job", {"job": job}))
    assert small == {"truncated": True, "job": {"id": "j1", "state": "running", "queue": "q", "owner": "alice"}}
    assert json.loads(bounded("job", {"job": {"id": "j2"}})) == {"job": {"id": "j2"}}
    assert len(bounded("audit", {"after": "y" * 10 * ENTRY_MAX_BYTES})) < 100


async def test_one_leases_life_is_on_the_stream_once_in_order(ns_url: str) -> None:
    parsed = parse_cluster_url(ns_url)
    r = aredis.Redis.from_url(parsed.redis_url, decode_responses=True)
    async with ClusterSlots(ns_url) as slots, ClusterSlots(ns_url) as other:
        await slots.configure_queue("q", limit=1, max_waiting=0)
        held = await slots.acquire("q", owner="o1", maker="alice")
        with pytest.raises(QueueFull):
            await other.acquire("q", owner="o2", maker="bob")
        assert await other.revoke(held.lease_id)  # another process's call ends it
        rows = await r.xrange(f"{parsed.prefix}:events")
    await r.aclose()
    events = [decode(i, f) for i, f in rows]
    shown = [(json.loads(e.data)["event"], e.clients) for e in events]
    assert shown == [("granted", {"alice"}), ("rejected", {"bob"}), ("revoked", {"alice"})]
    assert json.loads(events[1].data) == {"event": "rejected", "queue": "q", "owner": "o2", "waiting": 0}
    assert [e.key for e in events] == sorted(e.key for e in events)
