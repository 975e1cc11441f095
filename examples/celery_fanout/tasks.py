"""The Celery app of the fan-out example: ``call_llm`` runs at most FANOUT_CAP at once across every worker.

Environment: FANOUT_REDIS (redis://127.0.0.1:6379): db 0 holds the global slots (namespace
``fanout-example``) and the measurement, db 1 is the broker, db 2 the result backend.
"""

from __future__ import annotations

import os
import random
import time

import redis
from celery import Celery

from embedded_service.integrations.celery import SlotTask

REDIS = os.environ.get("FANOUT_REDIS", "redis://127.0.0.1:6379").rstrip("/")
STORE = f"{REDIS}/0?namespace=fanout-example"
WORK_S = float(os.environ.get("FANOUT_WORK_S", "0.5"))

app = Celery("tasks", broker=f"{REDIS}/1", backend=f"{REDIS}/2")
app.conf.update(
    slotdeck_url=STORE,
    task_acks_late=True,  # a task whose worker dies is delivered again
    worker_prefetch_multiplier=1,  # a worker takes one message per free process, no more
    broker_connection_retry_on_startup=True,
)

# How many calls run at once, measured inside the task across all processes (not by SlotDeck).
measure = redis.Redis.from_url(f"{REDIS}/0")
_enter = measure.register_script(
    "local n = redis.call('INCR', KEYS[1]) "
    "if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end"
)


@app.task(base=SlotTask, bind=True, slot_queue="llm", slot_backoff_s=0.5, slot_backoff_max_s=5, soft_time_limit=60)
def call_llm(self: SlotTask, prompt: str) -> str:
    """A fake LLM call: holds one of the cluster's ``llm`` slots while it "thinks"."""
    _enter(keys=["fanout-example:running", "fanout-example:peak"])
    try:
        time.sleep(WORK_S * random.uniform(0.8, 1.2))
        self.slot_lease.raise_if_lost()  # the slot was taken from us: do not publish the answer
        return f"summary of {prompt!r} (pid {os.getpid()})"
    finally:
        measure.decr("fanout-example:running")
