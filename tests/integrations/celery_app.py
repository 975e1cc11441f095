"""The Celery app the integration tests run in real ``celery worker`` processes.

Environment: CELERY_BROKER (broker URL), SLOTDECK_STORE (cluster URL), COUNTER_URL (a Redis
for the measurements), SLOTDECK_LEASE_TTL (seconds). Each body counts itself in and out of a
shared Redis counter (INCR/DECR, the peak kept by a script), so the peak is the number of bodies
running at once across every worker process, measured from inside the tasks.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from embedded_service.integrations.celery import SlotTask

app = Celery("celery_app", broker=os.environ["CELERY_BROKER"])
app.conf.update(
    slotdeck_url=os.environ["SLOTDECK_STORE"],
    slotdeck_options={"lease_ttl_s": float(os.environ.get("SLOTDECK_LEASE_TTL", "30"))},
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_enable_remote_control=False,
    broker_connection_retry_on_startup=True,
)
counter = redis.Redis.from_url(os.environ["COUNTER_URL"])
ENTER = counter.register_script(
    "local n = redis.call('INCR', KEYS[1]) "
    "if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end "
    "return n"
)


def body(key: str, work_s: float) -> None:
    counter.hset("pid", key, os.getpid())
    counter.hincrby("entered", key, 1)
    ENTER(keys=["cur", "peak"])
    try:
        time.sleep(work_s)
    finally:
        counter.decr("cur")
    counter.hincrby("done", key, 1)


@app.task(base=SlotTask, bind=True, slot_queue="llm", slot_wait_s=60)
def llm_wait(self: SlotTask, key: str, work_s: float) -> None:
    body(key, work_s)


@app.task(base=SlotTask, bind=True, slot_queue="llm", slot_backoff_s=0.2, slot_backoff_max_s=1.0, slot_max_retries=500)
def llm_retry(self: SlotTask, key: str, work_s: float) -> None:
    body(key, work_s)


@app.task(base=SlotTask, bind=True, slot_queue="llm", soft_time_limit=0.5)
def soft_limited(self: SlotTask, key: str) -> None:
    counter.hset("fence", key, self.slot_lease.fence)
    time.sleep(30)


@app.task(base=SlotTask, bind=True, slot_queue="llm", time_limit=1)
def hard_limited(self: SlotTask, key: str) -> None:
    counter.hset("fence", key, self.slot_lease.fence)
    time.sleep(30)


@app.task(base=SlotTask, bind=True, slot_queue="llm")
def until_lost(self: SlotTask, key: str) -> None:
    lease = self.slot_lease
    counter.hset("lease", key, lease.lease_id)
    deadline = time.monotonic() + 20
    while not lease.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    counter.hset("lost", key, lease.lost_reason or "never")
