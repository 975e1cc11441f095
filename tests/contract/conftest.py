"""The engine contract suite runs every test on both engines: ``memory`` (the in-process SlotEngine)
and ``redis`` (ClusterSlots on a private redis-server on a free loopback port; never a shared one:
the tests load functions and move their clock)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))

from engines import Engine, MemoryEngine, RedisEngine
from redisproc import PrivateRedis


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    if request.param == "memory":
        eng: Engine = MemoryEngine()
    else:
        server: PrivateRedis = request.getfixturevalue("private_redis")
        eng = RedisEngine(server.url("c" + uuid.uuid4().hex[:10]))
    await eng.open()
    try:
        yield eng
    finally:
        await eng.close()
