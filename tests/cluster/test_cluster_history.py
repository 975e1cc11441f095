"""Redis mode history: bounded to `history_points` in Redis, the oldest points folded into a base, the same
series from every service, and a writer that closes hands over at once."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aredis

from embedded_service import SlotService
from embedded_service.cluster.url import parse_cluster_url


async def _until(cond: object, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_history_is_bounded_folded_and_the_same_from_every_service(ns_url: str) -> None:
    parsed = parse_cluster_url(ns_url)
    r = aredis.Redis.from_url(parsed.redis_url, decode_responses=True)
    a = SlotService(ns_url, history_points=5, sample_interval_s=0.05)
    b = SlotService(ns_url, history_points=5, sample_interval_s=0.05)
    a.configure_queue("q", limit=3)
    await a.start()
    await b.start()
    try:
        writer, reader = (a, b) if a.cluster_history and a.cluster_history.writing else (b, a)
        held = [await b.acquire("q") for _ in range(2)]
        await _until(lambda: 2 in writer.history().queues["q"].in_use)
        seq_key = f"{parsed.prefix}:hist:seq"
        changed_by = int(await r.get(seq_key) or 0)  # the point that saw the change is no newer than this
        deadline = time.monotonic() + 20
        while int(await r.get(seq_key) or 0) < changed_by + 6:  # ... and is now folded into the base
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        for _ in range(50):  # the same points, read from Redis (a point written between the two reads: again)
            shown, other = await asyncio.gather(writer.read_history(600), reader.read_history(600))
            if shown == other:
                break
        assert shown == other
        assert len(shown.t) == 5 and await r.llen(f"{parsed.prefix}:hist:pts") == 5  # bounded in Redis too
        assert shown.queues["q"].in_use == [2] * 5 and shown.queues["q"].limit == [3] * 5  # from the folded base
        assert shown.t == sorted(shown.t)
        for lease in held:
            b.release(lease)

        await writer.close()  # it resigns: the other writes from its next sample on
        await _until(lambda: reader.cluster_history is not None and reader.cluster_history.writing, 2)
        seq = int(await r.get(seq_key) or 0)
        deadline = time.monotonic() + 20
        while int(await r.get(seq_key) or 0) < seq + 3:  # its points go on
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        after = await reader.read_history(600)
        assert len(after.t) == 5 and after.t[-1] > shown.t[-1]
    finally:
        for service in (a, b):
            if service.started_at is not None and service.cluster is not None and service.cluster.opened:
                await service.close()
        await r.aclose()
