"""`redis+sentinel://`: cluster mode reaches its master through Redis Sentinel, and finds the new master
after a failover (a real master, replica and sentinel, each a private process on a free loopback port)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redisproc import PrivateRedis, PrivateSentinel
from test_serve_redis import serve, wait_healthy

from embedded_service import SlotService
from embedded_service.api.deps import redact_url
from embedded_service.cluster import ClusterSlots
from embedded_service.errors import SlotTimeout


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[tuple[PrivateRedis, PrivateRedis, PrivateSentinel]]:
    """A master, its replica and a sentinel watching the master."""
    master = PrivateRedis(tmp_path / "master")
    (tmp_path / "master").mkdir()
    master.start()
    (tmp_path / "replica").mkdir()
    replica = PrivateRedis(tmp_path / "replica", extra=("--replicaof", "127.0.0.1", str(master.port)))
    replica.start()
    sentinel = PrivateSentinel(tmp_path / "sentinel", master.port)
    sentinel.start()
    try:
        yield master, replica, sentinel
    finally:
        for proc in (sentinel, replica, master):
            proc.stop()


async def test_a_service_on_a_sentinel_url_is_one_admission_domain(
    trio: tuple[PrivateRedis, PrivateRedis, PrivateSentinel],
) -> None:
    _master, _replica, sentinel = trio
    url = sentinel.url("s" + uuid.uuid4().hex[:8])
    a, b = SlotService(url), SlotService(url)
    a.configure_queue("q", limit=1, timeout_s=30)
    await a.start()
    await b.start()
    try:
        async with a.slot("q", owner="alice"):
            with pytest.raises(SlotTimeout):
                await b.acquire("q", timeout_s=0.3)  # a's slot counts on b: both reached the same master
        lease = await b.acquire("q", owner="bob", timeout_s=5)
        assert lease.fence > 0
        assert b.release(lease)
    finally:
        await a.close()
        await b.close()


async def test_after_a_failover_the_new_master_is_found_and_fences_keep_increasing(
    trio: tuple[PrivateRedis, PrivateRedis, PrivateSentinel],
) -> None:
    master, replica, sentinel = trio
    async with ClusterSlots(sentinel.url("f" + uuid.uuid4().hex[:8]), socket_timeout_s=2) as slots:
        await slots.configure_queue("q", limit=1)
        before = await slots.acquire("q", timeout_s=5)
        await slots.release(before)
        await asyncio.sleep(0.5)  # replication is asynchronous: let the replica catch up before the crash
        master.kill9()
        deadline = time.monotonic() + 60
        after = None
        while after is None:  # the sentinel needs ~1 s to call the master down, then promotes the replica
            try:
                after = await slots.acquire("q", timeout_s=2)
            except Exception as exc:  # redis-py's connection errors, or a timeout, while there is no master
                if time.monotonic() > deadline:
                    raise AssertionError(f"no acquire within 60 s of the failover: {exc!r}") from exc
                await asyncio.sleep(0.5)
        assert after.fence > before.fence
        await slots.release(after)
    promoted = redis.Redis(port=replica.port, decode_responses=True)
    try:
        assert promoted.info("replication")["role"] == "master"  # the lease above came from the old replica
    finally:
        promoted.close()


def test_a_sentinel_url_is_checked_in_one_line_and_its_password_never_shown(tmp_path: Path) -> None:
    bad = [
        ("redis+sentinel://127.0.0.1/mymaster", "must be host:port"),
        ("redis+sentinel://127.0.0.1:26379/", "names the master"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/x", "must be a number"),
    ]
    for url, reason in bad:
        done = subprocess.run(
            [sys.executable, "-m", "embedded_service.cli", "serve", "--store", url, "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and reason in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert redact_url("redis+sentinel://:s3cret@127.0.0.1:26379,127.0.0.1:26380/m/0") == (
        "redis+sentinel://:***@127.0.0.1:26379,127.0.0.1:26380/m/0"
    )


def test_serve_on_a_sentinel_url_runs_jobs_from_its_job_store(
    trio: tuple[PrivateRedis, PrivateRedis, PrivateSentinel], tmp_path: Path
) -> None:
    _master, _replica, sentinel = trio
    proc, client = serve(
        sentinel.url("s" + uuid.uuid4().hex[:8]),
        tmp_path / "home",
        "--job-store",
        f"sqlite:///{tmp_path / 'jobs.db'}",
    )
    try:
        wait_healthy([(proc, client)], 60)
        deadline = time.monotonic() + 60
        made = client.post("/v1/jobs", json={"queue": "default", "argv": [sys.executable, "-c", "print('ran')"]})
        assert made.status_code == 201, made.text
        job_id = made.json()["id"]
        while (state := client.get(f"/v1/jobs/{job_id}").json()["state"]) != "succeeded":
            assert state in ("queued", "running") and time.monotonic() < deadline, state
            time.sleep(0.1)
    finally:
        client.close()
        proc.kill()
        proc.wait(10)
