"""Remote holders and waiters never break a limit: each repro of issue 11 against a real server over loopback.

- a holder keeps its slot alone while its own client is busy with long-polls (renewals have their own pool),
- a lease whose renewals fail for any reason is reported lost before the server can give its slot away,
- a caller that gives up, or a waiting process that dies, leaves the line at once,
- a grant nobody picks up comes back within the claim TTL,
- close() releases held leases, a draining server raises a retryable type and acquire() rides a restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from embedded_service.api.auth import create_token
from embedded_service.api.embedded import EmbeddedServer
from embedded_service.client import AsyncClient, Client
from embedded_service.errors import LeaseLost, ServerUnavailable, SlotTimeout
from embedded_service.model import Role
from tests.api.conftest import Running


def _wait_until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class Bodies:
    """Counts bodies running at once (the thing a limit promises)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


async def test_a_holder_keeps_its_slot_alone_while_150_tasks_long_poll_on_the_same_client(running: Running) -> None:
    bodies = Bodies()
    async with (
        AsyncClient(running.url, running.tokens["client"], poll_s=5) as c,
        AsyncClient(running.url, running.tokens["operator"]) as op,
    ):
        await op.configure_queue("one", limit=1)
        holding = asyncio.Event()
        outcome: list[str] = []

        async def holder() -> None:
            try:
                async with c.slot("one", ttl_s=3):
                    bodies.enter()
                    holding.set()
                    try:
                        await asyncio.sleep(7)  # more than two TTLs, renewed under load
                    finally:
                        bodies.leave()
                outcome.append("finished")
            except LeaseLost:
                outcome.append("lost")  # allowed: its body was stopped before anyone else got the slot

        async def waiter() -> None:
            try:
                lease = await c.acquire("one", timeout_s=60)
            except SlotTimeout:
                return
            bodies.enter()
            await asyncio.sleep(0)
            bodies.leave()
            await c.release(lease)

        first = asyncio.ensure_future(holder())
        await holding.wait()
        await asyncio.gather(first, *(waiter() for _ in range(150)))
        assert bodies.peak == 1, "two bodies ran at once under a limit of 1"
        assert outcome in (["finished"], ["lost"])
        stats = await op.queue("one")
        assert stats.totals.granted == 151 and stats.in_use == 0


async def test_a_lease_whose_renewals_are_refused_is_lost_before_the_server_gives_its_slot_away(running: Running) -> None:
    engine = running.server.service.engine
    temp = running.server.call(create_token(running.server.service.store, "temp", Role.client))
    async with AsyncClient(running.url, temp) as c, AsyncClient(running.url, running.tokens["admin"]) as admin:
        await admin.configure_queue("solo", limit=1)
        at_loss: dict[str, bool] = {}
        reached_end = False

        def on_lost(lease) -> None:  # type: ignore[no-untyped-def]
            at_loss["server_still_counts_it"] = lease.id in engine.leases

        with pytest.raises(LeaseLost) as lost:
            async with c.slot("solo", ttl_s=5, on_lost=on_lost):
                await admin.delete_token("temp")  # every renewal from now on is a 401
                await asyncio.sleep(30)
                reached_end = True
        assert not reached_end
        assert at_loss == {"server_still_counts_it": True}, "the holder must hear of it before the slot is given away"
        assert "renewal" in lost.value.reason


def test_the_sync_slot_reports_a_revoked_lease_in_check_and_on_exit(running: Running) -> None:
    with Client(running.url, running.tokens["client"]) as c, Client(running.url, running.tokens["operator"]) as op:
        with pytest.raises(LeaseLost) as lost, c.slot("default", ttl_s=1) as lease:
            op.revoke(lease.id)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                lease.check()  # what a long loop in a worker does between steps
                time.sleep(0.05)
        assert lost.value.reason == "revoked" and lease.lost == "revoked"
        with pytest.raises(LeaseLost), c.slot("default", ttl_s=1) as again:
            op.revoke(again.id)
            _wait_until(lambda: again.lost is not None)  # a body that never checks still hears of it on exit


async def test_callers_that_give_up_leave_no_waiter_behind(running: Running) -> None:
    async with (
        AsyncClient(running.url, running.tokens["client"]) as c,
        AsyncClient(running.url, running.tokens["operator"]) as op,
    ):
        await op.configure_queue("zero", limit=0)

        async def give_up(after_s: float) -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(c.acquire("zero"), after_s)

        # some give up before any answer could come, some while their long-poll waits
        await asyncio.gather(*(give_up(0.001 if n % 2 else 0.5) for n in range(50)))
        deadline = time.monotonic() + 15
        while (await op.queue("zero")).waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert (await op.queue("zero")).waiting == 0
        await op.set_limit("zero", 5)
        await asyncio.sleep(0.5)
        stats = await op.queue("zero")
        assert (stats.in_use, stats.totals.granted) == (0, 0), "no slot may go to a caller that left"


def test_a_killed_waiting_process_leaves_the_line_and_gets_no_slot(running: Running) -> None:
    waiter = textwrap.dedent(
        f"""
        from embedded_service.client import Client
        c = Client({running.url!r}, {running.tokens["client"]!r})
        print("waiting", flush=True)
        c.acquire("default", timeout_s=120)
        """
    )
    with Client(running.url, running.tokens["client"]) as c:
        held = c.acquire("default")
        proc = subprocess.Popen([sys.executable, "-c", waiter], stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
            _wait_until(lambda: c.queue("default").waiting == 1)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            _wait_until(lambda: c.queue("default").waiting == 0, timeout=10)  # its connection closed: out of line
        finally:
            proc.kill()
            proc.wait()
        c.release(held)
        stats = c.queue("default")
        assert stats.in_use == 0 and stats.totals.granted == 1


def test_a_grant_nobody_picks_up_starts_with_a_short_claim_ttl(running: Running) -> None:
    with running.http("client") as c:
        holder = c.post("/v1/queues/default/leases", json={}).json()["lease"]
        waiter = c.post("/v1/queues/default/leases", json={"wait_s": 0, "ttl_s": 60}).json()["waiter"]
        assert c.delete(f"/v1/leases/{holder['id']}").status_code == 204  # granted to the waiter, nobody polling
        lease = next(x for x in c.get("/v1/snapshot").json()["leases"])
        assert lease["expires_at"] - lease["granted_at"] <= 5.5, "a dead waiter's slot must come back in seconds"
        picked = c.post("/v1/queues/default/leases", json={"wait_s": 0, "ttl_s": 60, "waiter_id": waiter["id"]})
        assert picked.status_code == 201 and picked.json()["lease"]["id"] == lease["id"]
        renewed = picked.json()["lease"]
        assert renewed["expires_at"] - lease["granted_at"] >= 50, "picked up, it runs on its full TTL"
        c.delete(f"/v1/leases/{lease['id']}")


def test_a_request_named_by_the_client_is_withdrawn_even_if_the_cancel_comes_first(running: Running) -> None:
    with running.http("client") as c:
        holder = c.post("/v1/queues/default/leases", json={}).json()["lease"]
        assert c.post("/v1/waiters/rEarlyCancel01/cancel").status_code == 404  # nothing yet: remembered
        late = c.post("/v1/queues/default/leases", json={"wait_s": 0, "request_id": "rEarlyCancel01"})
        assert late.status_code == 409 and late.json()["code"] == "wait_cancelled"
        first = c.post("/v1/queues/default/leases", json={"wait_s": 0, "request_id": "rRetried00001"})
        again = c.post("/v1/queues/default/leases", json={"wait_s": 0, "request_id": "rRetried00001"})
        assert first.status_code == again.status_code == 202
        assert first.json()["waiter"]["id"] == again.json()["waiter"]["id"], "a retry resumes the same waiter"
        c.delete(f"/v1/leases/{holder['id']}")
        granted = c.post("/v1/waiters/rRetried00001/cancel")  # granted while nobody polled: the grant is released
        assert granted.status_code == 200
        assert c.get("/v1/snapshot").json()["queues"][0]["in_use"] == 0


async def test_close_releases_held_leases(running: Running) -> None:
    async with AsyncClient(running.url, running.tokens["operator"]) as op:
        c = AsyncClient(running.url, running.tokens["client"])
        await c.acquire("default", ttl_s=600)
        await c.close()
        assert (await op.queue("default")).in_use == 0
    with Client(running.url, running.tokens["client"]) as sync_client:
        sync_client.acquire("default", ttl_s=600)
    with Client(running.url, running.tokens["viewer"]) as viewer:
        assert viewer.queue("default").in_use == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_draining_server_raises_a_retryable_error_and_acquire_rides_a_restart(tmp_path: Path) -> None:
    port = _free_port()
    store = f"sqlite:///{tmp_path / 'deck.db'}"

    def serve() -> EmbeddedServer:
        return EmbeddedServer(store, port=port, probes=False, write_local=False, grace_s=0.5, default_limit=1).start()

    server = serve()
    token = server.call(create_token(server.service.store, "worker", Role.client))
    errors: list[BaseException] = []
    got: list[object] = []
    with Client(server.url, token, retry=False) as plain, Client(server.url, token, poll_s=1) as patient:
        held = plain.acquire("default", ttl_s=600)

        def wait_plain() -> None:
            try:
                plain.acquire("default", timeout_s=60)
            except BaseException as exc:
                errors.append(exc)

        def wait_patient() -> None:
            got.append(patient.acquire("default", timeout_s=60))

        threads = [threading.Thread(target=wait_plain), threading.Thread(target=wait_patient)]
        for t in threads:
            t.start()
        _wait_until(lambda: patient.queue("default").waiting == 2)
        server.stop()  # drains: waiters are told; the holder's lease outlives the grace and is kept for the restart
        threads[0].join(30)
        assert len(errors) == 1 and isinstance(errors[0], ServerUnavailable), errors
        server = serve()  # same port, same store: the patient client's acquire retries into it
        try:
            plain.release(held)  # the holder ends its work: its lease, taken back by the restart, frees the slot
            threads[1].join(60)
            assert got, "acquire() should have retried across the restart within its timeout"
            patient.release(got[0])  # type: ignore[arg-type]
        finally:
            server.stop()


def test_a_retried_request_gets_its_lease_again_with_the_ttl_counted_from_the_retry(running: Running) -> None:
    with running.http("client") as c:
        body = {"ttl_s": 10, "request_id": "rLostAnswer001"}
        first = c.post("/v1/queues/default/leases", json=body).json()["lease"]
        time.sleep(1.5)  # the answer was lost; the client asks again under the same name
        again = c.post("/v1/queues/default/leases", json=body)
        assert again.status_code == 201 and again.json()["lease"]["id"] == first["id"]
        assert again.json()["lease"]["expires_at"] - first["expires_at"] >= 1.0, "its local deadline starts at the retry"
        assert c.get("/v1/snapshot").json()["queues"][0]["in_use"] == 1
        c.delete(f"/v1/leases/{first['id']}")


def test_waiting_for_a_client_connection_does_not_eat_into_a_new_leases_deadline(running: Running) -> None:
    """The deadline counts from when the request was written, not from when it began to wait for a connection."""
    with Client(running.url, running.tokens["operator"], poll_s=4, max_connections=1) as c:
        c.configure_queue("shut", limit=0)
        c.configure_queue("open", limit=5)

        def wait_in_vain() -> None:
            with pytest.raises(SlotTimeout):
                c.acquire("shut", timeout_s=4)

        blocker = threading.Thread(target=wait_in_vain)
        blocker.start()
        _wait_until(lambda: running.server.service.engine.queues["shut"].waiting == 1)
        lease = c.acquire("open", ttl_s=10)  # waits for the one connection, held by the long-poll
        returned = time.monotonic()
        blocker.join(30)
        assert lease.deadline - returned >= 10 - lease.margin_s - 1.5
        c.release(lease)


def test_slot_exit_does_not_raise_when_a_restarted_server_no_longer_knows_the_lease(tmp_path: Path) -> None:
    port = _free_port()
    store = f"sqlite:///{tmp_path / 'deck.db'}"

    def serve() -> EmbeddedServer:
        return EmbeddedServer(store, port=port, probes=False, write_local=False, grace_s=0.5, default_limit=1).start()

    server = serve()
    token = server.call(create_token(server.service.store, "worker", Role.client))
    try:
        with Client(server.url, token) as c:
            with c.slot("default", ttl_s=60) as lease:  # the first renewal is 20 s away
                server.stop()
                server = serve()
            assert lease.lost is None  # the body ended before any renewal could tell; its release only warned
    finally:
        server.stop()


def test_a_waiter_that_stops_polling_is_dropped_within_seconds_whatever_its_ttl(running: Running) -> None:
    with running.http("client") as c:
        holder = c.post("/v1/queues/default/leases", json={}).json()["lease"]
        c.post("/v1/queues/default/leases", json={"wait_s": 0, "ttl_s": 600})  # then never polls again
        assert c.get("/v1/queues/default").json()["waiting"] == 1
        deadline = time.monotonic() + 20  # the grace is 5 s; a 600 s TTL must not keep it in line for 10 minutes
        while c.get("/v1/queues/default").json()["waiting"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.get("/v1/queues/default").json()["waiting"] == 0
        c.delete(f"/v1/leases/{holder['id']}")
        assert c.get("/v1/queues/default").json()["in_use"] == 0
