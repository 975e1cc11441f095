"""SlotTask in real Celery workers: two ``celery worker -P prefork -c 8`` (16 processes; also ``-P threads``)
compete for a global cap of 10 held in a private Redis; the peak is measured from inside the tasks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from embedded_service.cluster import BlockingClusterSlots

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RABBIT = "amqp://guest:guest@127.0.0.1:5672//"
CAP = 10

pytestmark = pytest.mark.timeout(240)


class Deployment:
    """A private Redis (admission in db 0, measurements in db 2), a broker, and an admin handle."""

    def __init__(self, server: Any, broker: str, lease_ttl_s: float) -> None:
        self.store = server.url("celery" + uuid.uuid4().hex[:6])
        self.counter_url = f"redis://127.0.0.1:{server.port}/2"
        self.broker = broker
        self.queue = "slotdeck-test-" + uuid.uuid4().hex[:8]
        self.lease_ttl_s = lease_ttl_s
        self.counter = redis.Redis.from_url(self.counter_url, decode_responses=True)
        self.admin = BlockingClusterSlots(self.store)
        self.admin.configure_queue("llm", limit=CAP)
        self.client = Celery("client", broker=broker)
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_workers(self, n: int, tmp_path: Path, pool: str = "prefork") -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
            "CELERY_BROKER": self.broker,
            "SLOTDECK_STORE": self.store,
            "COUNTER_URL": self.counter_url,
            "SLOTDECK_LEASE_TTL": str(self.lease_ttl_s),
        }
        for i in range(n):
            log = open(tmp_path / f"worker{i}.log", "wb")  # noqa: SIM115 - the worker writes it
            cmd = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", pool, "-c", "8"]
            cmd += ["-Q", self.queue, "-n", f"w{i}-{self.queue}@%h", "-l", "warning"]
            cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
            self.workers.append(
                subprocess.Popen(cmd, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
            log.close()

    def send(self, task: str, *args: Any) -> None:
        self.client.send_task(f"celery_app.{task}", args=args, queue=self.queue)

    def in_use(self) -> int:
        return int(self.admin.snapshot()["queues"]["llm"]["in_use"])

    def totals(self) -> dict[str, int]:
        return dict(self.admin.snapshot()["queues"]["llm"]["totals"])

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if self.broker.startswith("amqp://"):
            with self.client.connection_for_write() as conn:
                conn.default_channel.queue_delete(self.queue)
        self.admin.close()
        self.counter.close()
        self.client.close()


@contextmanager
def deployment(server: Any, broker: str, tmp_path: Path, *, lease_ttl_s: float = 30) -> Iterator[Deployment]:
    dep = Deployment(server, broker, lease_ttl_s)
    try:
        yield dep
    finally:
        dep.close()
        for log in sorted(tmp_path.glob("worker*.log")):
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                print(f"--- {log.name}\n{text[-4000:]}")


def until(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    """Poll ``check`` every 20 ms; returns the monotonic time it first held, fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic()


def rabbit_up() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        return False
    return True


def fan_out(dep: Deployment, tmp_path: Path, pool: str = "prefork") -> None:
    """60 tasks (half wait for a slot, half retry with backoff) on 2 workers x 8; the cap is reached exactly."""
    dep.start_workers(2, tmp_path, pool)
    keys = [f"t{i}" for i in range(60)]
    for i, key in enumerate(keys):
        dep.send("llm_wait" if i % 2 else "llm_retry", key, 0.4)
    until("every task to finish", lambda: dep.counter.hlen("done") == len(keys), 150)
    done = dep.counter.hgetall("done")
    assert sorted(done) == sorted(keys) and set(done.values()) == {"1"}  # each completed exactly once
    assert int(dep.counter.get("peak") or 0) == CAP  # measured inside the tasks, across 16 processes or threads
    pids = set(dep.counter.hgetall("pid").values())
    assert len(pids) > CAP if pool == "prefork" else len(pids) == 2  # bodies ran in every kind of place there is
    until("every slot to return", lambda: dep.in_use() == 0, 10)
    totals = dep.totals()
    assert totals["granted"] == totals["released"] == len(keys)


def test_prefork_workers_on_a_redis_broker_reach_the_cap_exactly_and_never_more(private_redis: Any, tmp_path: Path) -> None:
    broker = f"redis://127.0.0.1:{private_redis.port}/1"
    with deployment(private_redis, broker, tmp_path) as dep:
        fan_out(dep, tmp_path)


def test_thread_pool_workers_share_cluster_slots_per_process_and_reach_the_cap(private_redis: Any, tmp_path: Path) -> None:
    broker = f"redis://127.0.0.1:{private_redis.port}/1"
    with deployment(private_redis, broker, tmp_path) as dep:
        fan_out(dep, tmp_path, "threads")


@pytest.mark.skipif(not rabbit_up(), reason="RabbitMQ is not running on 127.0.0.1:5672 (.ci/run starts it)")
def test_prefork_workers_on_rabbitmq_reach_the_cap_exactly_and_never_more(private_redis: Any, tmp_path: Path) -> None:
    with deployment(private_redis, RABBIT, tmp_path) as dep:
        fan_out(dep, tmp_path)


def test_a_sigkilled_worker_child_gives_its_slot_back_within_the_lease_ttl(private_redis: Any, tmp_path: Path) -> None:
    """A running task keeps its slot past the lease TTL (background renewal); once its process is
    SIGKILLed the slot returns within the TTL plus one reaper tick, and the other tasks all complete."""
    ttl = 3.0
    broker = f"redis://127.0.0.1:{private_redis.port}/1"
    with deployment(private_redis, broker, tmp_path, lease_ttl_s=ttl) as dep:
        dep.start_workers(2, tmp_path)
        dep.send("llm_wait", "victim", 120)
        until("the victim to hold its slot", lambda: dep.counter.hexists("pid", "victim"), 90)
        time.sleep(2 * ttl)  # renewed in the background: held for twice its TTL, still held
        assert dep.in_use() == 1 and dep.totals()["expired"] == 0
        keys = [f"t{i}" for i in range(30)]
        for key in keys:
            dep.send("llm_wait", key, 0.3)
        until("the others to fill the cap", lambda: dep.in_use() == CAP, 60)
        os.kill(int(dep.counter.hget("pid", "victim") or 0), signal.SIGKILL)
        killed = time.monotonic()
        back = until("the victim's slot to expire", lambda: dep.totals()["expired"] == 1, ttl + 10)
        print(f"slot back {back - killed:.2f} s after SIGKILL (lease TTL {ttl} s, tick 1 s)")
        assert back - killed <= ttl + 1.0 + 0.5  # the lease TTL, one reaper tick, polling and load
        until("the other tasks to finish", lambda: dep.counter.hlen("done") == len(keys), 90)
        done = dep.counter.hgetall("done")
        assert sorted(done) == sorted(keys) and set(done.values()) == {"1"}
        assert int(dep.counter.get("peak") or 0) <= CAP
        until("every slot to return", lambda: dep.in_use() == 0, 10)
        assert dep.totals()["expired"] == 1


def test_time_limits_release_the_slot_at_once_and_a_revoke_reaches_the_task(private_redis: Any, tmp_path: Path) -> None:
    """Soft limit: SoftTimeLimitExceeded in the body; hard limit: SIGTERM from the pool, as SystemExit.
    Either way the release comes well before the 30 s lease TTL would have freed the slot.
    An operator's revoke turns the running task's ``self.slot_lease.lost`` True."""
    broker = f"redis://127.0.0.1:{private_redis.port}/1"
    with deployment(private_redis, broker, tmp_path, lease_ttl_s=30) as dep:
        dep.start_workers(1, tmp_path)
        dep.send("until_lost", "r")
        until("until_lost to hold its slot", partial(dep.counter.hexists, "lease", "r"), 90)
        assert dep.admin.revoke(str(dep.counter.hget("lease", "r")), "test")
        until("the task to see its lease lost", partial(dep.counter.hexists, "lost", "r"), 15)
        assert dep.counter.hget("lost", "r") == "revoked: test"
        for n, task in enumerate(("soft_limited", "hard_limited"), start=1):
            dep.send(task, task)
            until(f"{task} to hold its slot", partial(dep.counter.hexists, "fence", task), 90)
            started = time.monotonic()
            took = until(f"{task} to release", partial(released, dep, n), 15) - started
            print(f"{task}: slot released {took:.2f} s after the body started (lease TTL 30 s)")
            assert took < 10
            assert dep.in_use() == 0 and dep.totals()["expired"] == 0


def released(dep: Deployment, n: int) -> bool:
    return dep.totals()["released"] == n
