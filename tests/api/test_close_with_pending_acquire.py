"""`close()` while another task/thread is still waiting in `acquire()` (attack on issue 11).

close() releases the held leases; the slot then goes to the client's own pending acquire, whose connection
close() is about to cut, so that grant used to stay held on the server for its whole TTL (60 s here) with
nobody holding it. close() now withdraws its pending requests first."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from embedded_service.client import AsyncClient, Client
from tests.api.conftest import Running


def _in_use(running: Running) -> int:
    with running.http("operator") as http:
        return int(http.get("/v1/queues/one").json()["in_use"])


def _wait_for_free(running: Running, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while _in_use(running) != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return _in_use(running)


def _waiting(running: Running) -> int:
    with running.http("operator") as http:
        return int(http.get("/v1/queues/one").json()["waiting"])


def test_sync_close_with_a_thread_still_waiting_leaves_no_slot_held(running: Running) -> None:
    with Client(running.url, running.tokens["operator"]) as op:
        op.configure_queue("one", limit=1)
    c = Client(running.url, running.tokens["client"])
    c.acquire("one", ttl_s=60)

    def wait() -> None:
        with contextlib.suppress(Exception):
            c.acquire("one", ttl_s=60, timeout_s=60)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    deadline = time.monotonic() + 20
    while _waiting(running) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    c.close()
    assert _wait_for_free(running) == 0, "a slot stayed held after close()"
    assert _waiting(running) == 0
    waiter.join(40)


async def test_async_close_with_a_task_still_waiting_leaves_no_slot_held(running: Running) -> None:
    async with AsyncClient(running.url, running.tokens["operator"]) as op:
        await op.configure_queue("one", limit=1)
    c = AsyncClient(running.url, running.tokens["client"])
    await c.acquire("one", ttl_s=60)
    pending = asyncio.create_task(c.acquire("one", ttl_s=60, timeout_s=60))
    for _ in range(400):
        if await asyncio.to_thread(_waiting, running) == 1:
            break
        await asyncio.sleep(0.05)
    await c.close()
    assert await asyncio.to_thread(_wait_for_free, running) == 0, "a slot stayed held after close()"
    pending.cancel()
    with contextlib.suppress(BaseException):
        await pending
