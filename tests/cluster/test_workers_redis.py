"""`uvicorn --workers 4` each embedding `SlotService("redis://...")` with a limit of 3: one limit for all four."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redisproc import PrivateRedis, free_port

APP_DIR = Path(__file__).parent


@pytest.fixture
def workers(redis_server: PrivateRedis, ns_url: str) -> Iterator[tuple[str, redis.Redis]]:
    port = free_port()
    raw_url = f"redis://127.0.0.1:{redis_server.port}/1"  # db 1: the test's own counters
    env = {**os.environ, "SD_URL": ns_url, "SD_RAW": raw_url}
    args = ["--app-dir", str(APP_DIR), "--port", str(port), "--workers", "4", "--log-level", "warning"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "embedded_worker:app", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    counters = redis.Redis.from_url(raw_url, decode_responses=True)
    try:
        deadline = time.monotonic() + 60
        while int(counters.get("started") or 0) < 4:
            assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the four workers did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", counters
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        counters.close()


async def load(url: str, requests: int, at_once: int) -> set[int]:
    """`requests` calls of /work, `at_once` in flight (each its own connection); the worker pids that served them."""
    pids: set[int] = set()
    gate = asyncio.Semaphore(at_once)

    async def one() -> None:
        async with gate, httpx.AsyncClient(base_url=url, timeout=60) as client:
            reply = await client.post("/work")
            reply.raise_for_status()
            pids.add(reply.json()["pid"])

    await asyncio.gather(*(one() for _ in range(requests)))
    return pids


async def test_four_workers_share_one_limit_and_its_changes(workers: tuple[str, redis.Redis]) -> None:
    url, counters = workers
    pids = await load(url, 96, 24)
    assert len(pids) >= 2  # served by several worker processes
    assert counters.get("peak") == "3"  # never more than 3 bodies at once, and the load reached 3
    async with httpx.AsyncClient(base_url=url) as client:
        changed = await client.post("/limit/1")  # one worker changes the limit
    assert changed.status_code == 200
    counters.set("peak", 0)
    pids = await load(url, 48, 24)
    assert len(pids) >= 2
    assert counters.get("peak") == "1"  # the change holds on every worker
    assert counters.get("cur") == "0"
