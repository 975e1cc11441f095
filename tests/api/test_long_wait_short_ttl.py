"""A waiter whose wait in one long-poll is longer than its TTL still gets a live lease (attack on issue 11).

The client counts a new lease's local deadline from when it *sent* the poll that brought the grant; a poll may
last `poll_s` (20 s), so with `ttl_s=6` a grant after 8 s of waiting used to arrive already lost."""

from __future__ import annotations

import asyncio
import threading
import time

from embedded_service.client import AsyncClient, Client
from tests.api.conftest import Running

TTL_S = 6.0
HOLD_S = TTL_S + 2  # longer than the new holder's TTL minus its safety margin


def test_a_sync_grant_after_a_wait_longer_than_the_ttl_arrives_alive(running: Running) -> None:
    with Client(running.url, running.tokens["operator"]) as op, Client(running.url, running.tokens["client"]) as c:
        op.configure_queue("one", limit=1)
        first = op.acquire("one", ttl_s=60)
        threading.Timer(HOLD_S, op.release, args=(first,)).start()
        with c.slot("one", ttl_s=TTL_S, timeout_s=120) as lease:  # waits HOLD_S s (poll_s is 20 s)
            assert lease.lost is None, lease.lost
            lease.check()
            renewed_from = lease.deadline
            deadline = time.monotonic() + 60
            while lease.deadline == renewed_from and time.monotonic() < deadline:
                lease.check()
                time.sleep(0.05)
            lease.check()  # a renewal was confirmed and the lease is still held


async def test_an_async_grant_after_a_wait_longer_than_the_ttl_arrives_alive(running: Running) -> None:
    async with (
        AsyncClient(running.url, running.tokens["operator"]) as op,
        AsyncClient(running.url, running.tokens["client"]) as c,
    ):
        await op.configure_queue("one", limit=1)
        first = await op.acquire("one", ttl_s=60)

        async def release_later() -> None:
            await asyncio.sleep(HOLD_S)
            await op.release(first)

        later = asyncio.create_task(release_later())
        async with c.slot("one", ttl_s=TTL_S, timeout_s=120) as lease:
            assert lease.lost is None, lease.lost
            renewed_from = lease.deadline
            for _ in range(1200):
                if lease.deadline != renewed_from:
                    break
                await asyncio.sleep(0.05)
            lease.check()
        await later
