"""Fixtures for cluster mode: a private redis-server per test (never the shared 6379: FUNCTION LOAD is server-wide)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redisproc import PrivateRedis

from embedded_service.cluster import ClusterSlots


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ns_url(redis_server: PrivateRedis) -> str:
    return redis_server.url("t" + uuid.uuid4().hex[:8])


@pytest.fixture
async def slots(ns_url: str) -> AsyncIterator[ClusterSlots]:
    async with ClusterSlots(ns_url, lease_ttl_s=30, claim_ttl_s=5) as s:
        yield s


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """The `ownership.serving.Serve` servers a test starts (append them): killed at its end if still running."""
    servers: list[Any] = []
    yield servers
    for server in servers:
        server.kill()
