"""The client library against a real server: the same slot()/acquire()/release() shape as a local
SlotService, leases kept alive by heartbeats and lost when the holder dies."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from embedded_service import SlotService
from embedded_service.client import AsyncClient, AuthError, Client, ConnectionFailed
from embedded_service.errors import LeaseGone, LeaseLost, QueueFull, SlotTimeout, UnknownQueue
from tests.api.conftest import Running


def _wait_until(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_killed_client_process_loses_its_lease_within_the_ttl(running: Running) -> None:
    holder = textwrap.dedent(
        f"""
        import sys, time
        from embedded_service.client import Client
        client = Client({running.url!r}, {running.tokens["client"]!r})
        lease = client.acquire("default", ttl_s=2, owner="doomed")
        print(lease.id, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        lease_id = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert lease_id.startswith("L")
        with Client(running.url, running.tokens["viewer"]) as viewer:
            time.sleep(3)  # alive: heartbeats keep it past its 2 s TTL
            assert lease_id in {lease.id for lease in viewer.snapshot().leases}
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
            took = _wait_until(lambda: lease_id not in {lease.id for lease in viewer.snapshot().leases}, timeout=5)
            assert took <= 2.5
            assert viewer.snapshot().queues[0].totals.expired == 1
    finally:
        proc.kill()
        proc.wait()


def test_sync_slot_renews_and_times_out_like_local(running: Running) -> None:
    with Client(running.url, running.tokens["client"], poll_s=0.5) as c:
        with c.slot("default", ttl_s=1) as lease:
            with pytest.raises(SlotTimeout) as timed_out:
                c.acquire("default", timeout_s=1.5)  # spans several long-polls and heartbeats
            assert timed_out.value.queue == "default"
            assert lease.lost is None and lease.id in {x.id for x in c.snapshot().leases}
        assert c.snapshot().queues[0].in_use == 0
        with pytest.raises(UnknownQueue):
            c.acquire("nope")


def test_a_limit_raised_by_an_operator_admits_a_waiting_remote_client(running: Running) -> None:
    with (
        Client(running.url, running.tokens["client"], poll_s=0.3) as c,
        Client(running.url, running.tokens["operator"]) as op,
    ):
        held = c.acquire("default")
        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(c.acquire("default", owner="second")))
        waiter.start()
        _wait_until(lambda: op.snapshot().queues[0].waiting == 1, timeout=5)
        time.sleep(0.5)  # it keeps its place across re-polls
        assert not got
        op.set_limit("default", 2)
        waiter.join(5)
        assert got and got[0].owner == "second"  # type: ignore[attr-defined]
        c.release(held)
        c.release(got[0])  # type: ignore[arg-type]


async def test_async_slot_is_cancelled_when_an_operator_revokes_it(running: Running) -> None:
    async with (
        AsyncClient(running.url, running.tokens["client"]) as c,
        AsyncClient(running.url, running.tokens["operator"]) as op,
    ):
        reached_end = False
        with pytest.raises(LeaseLost) as lost:
            async with c.slot("default", ttl_s=1) as lease:
                await op.revoke(lease.id)
                await asyncio.sleep(3)  # the next heartbeat learns it is gone and cancels this body
                reached_end = True
        assert not reached_end and lease.lost == "revoked" and lost.value.reason == "revoked"
        with pytest.raises(LeaseGone):
            await c.renew(lease.id)


async def test_async_errors_match_local_ones(running: Running) -> None:
    async with AsyncClient(running.url, running.tokens["operator"]) as op:
        await op.configure_queue("tiny", limit=0, max_waiting=0)
        with pytest.raises(QueueFull):
            await op.acquire("tiny")
        await op.delete_queue("tiny")
    async with AsyncClient(running.url, running.tokens["viewer"]) as viewer:
        with pytest.raises(AuthError) as denied:
            await viewer.pause("default")
        assert denied.value.status == 403
    async with AsyncClient("http://127.0.0.1:9", timeout=1) as nowhere:
        with pytest.raises(ConnectionFailed):
            await nowhere.health()


def test_sync_and_async_clients_offer_the_same_methods() -> None:
    def public(cls: type) -> dict[str, list[str]]:
        return {
            n: list(inspect.signature(f).parameters) for n, f in vars(cls).items() if not n.startswith("_") and callable(f)
        }

    assert public(Client) == public(AsyncClient)
    local = {
        "slot",
        "acquire",
        "release",
        "set_limit",
        "pause",
        "resume",
        "configure_queue",
        "snapshot",
        "history",
        "revoke",
    }
    assert local <= set(public(Client)) and local <= {n for n in dir(SlotService) if not n.startswith("_")}
