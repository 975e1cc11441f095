"""`slot()` exit on a lease the server no longer knows (a memory:// server that restarted): a warning, not an error."""

from __future__ import annotations

import logging

import pytest

from embedded_service.client import AsyncClient, Client
from embedded_service.engine import SlotEngine
from tests.api.conftest import Running


def forget(engine: SlotEngine, lease_id: str) -> None:
    """What a restarted server without a durable store knows of the lease: nothing."""
    lease = engine.leases.pop(lease_id)
    if lease.timer is not None:
        lease.timer.cancel()
    engine.queues[lease.queue].in_use -= 1


def test_sync_slot_exit_warns(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    engine = running.server.service.engine
    with caplog.at_level(logging.WARNING, logger="slotdeck.client"), Client(running.url, running.tokens["client"]) as c:
        with c.slot("default") as lease:
            running.run(forget, engine, lease.id)
        done = "the work after the body ran"
    assert done and f"releasing lease {lease.id}: the server no longer knows it" in caplog.text


async def test_async_slot_exit_warns(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    engine = running.server.service.engine
    with caplog.at_level(logging.WARNING, logger="slotdeck.client"):
        async with AsyncClient(running.url, running.tokens["client"]) as c, c.slot("default") as lease:
            running.run(forget, engine, lease.id)
    assert f"releasing lease {lease.id}: the server no longer knows it" in caplog.text
