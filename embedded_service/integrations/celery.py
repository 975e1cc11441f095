"""Celery tasks that take a global SlotDeck slot (cluster mode on Redis) while they run.

Usage::

    from celery import Celery
    from embedded_service.integrations.celery import SlotTask

    app = Celery("llm", broker="redis://127.0.0.1:6379/1")
    app.conf.update(
        slotdeck_url="redis://127.0.0.1:6379/0?namespace=prod",  # or the SLOTDECK_STORE variable
        slotdeck_options={"lease_ttl_s": 30},                     # ClusterSlots keyword arguments
        task_acks_late=True, worker_prefetch_multiplier=1,
    )

    @app.task(base=SlotTask, bind=True, slot_queue="llm", soft_time_limit=300)
    def summarize(self, doc_id):
        ...                                   # at most the queue's limit of these run at once, cluster-wide
        self.slot_lease.raise_if_lost()       # before a side effect that needs the slot

The queue must exist (``BlockingClusterSlots(url).configure_queue("llm", limit=10)``, once, by
whoever deploys; ``UnknownQueue`` otherwise). Options are task attributes (``app.task`` keywords or
a subclass): ``slot_queue`` (required), ``slot_wait_s`` (0: seconds to wait for a slot before
retrying), ``slot_priority`` (0; lower first), ``slot_max_retries`` (50), ``slot_backoff_s`` (1.0)
and ``slot_backoff_max_s`` (60.0).

Over the limit (no slot within ``slot_wait_s``, or the queue's ``max_waiting`` reached) the task
is retried with ``self.retry(countdown=...)`` instead of parking a worker process (Sidekiq
Enterprise's concurrent limiter does the same): the countdown doubles per retry up to
``slot_backoff_max_s`` with "equal jitter" (half fixed, half random, from the AWS Architecture
Blog's "Exponential Backoff And Jitter") so retried tasks do not come back in step. After
``slot_max_retries`` the task fails with the ``SlotTimeout`` or ``QueueFull`` that stopped it.

The slot is released however the body ends: return, exception, ``SoftTimeLimitExceeded``; a
hard time limit or a cold shutdown sends a prefork child SIGTERM, which billiard turns into
``SystemExit`` there, so the release still runs; after ``kill -9`` the slot returns
when its lease expires (``lease_ttl_s``). While the task runs, the process's ClusterSlots renews
the lease in the background; if the lease is lost anyway (revoked by an operator, expired
while the process was stalled, Redis data lost) ``self.slot_lease.lost`` turns True and a
warning is logged when the task ends. Each worker process opens its own ``BlockingClusterSlots``
on first use (per pid: a prefork child never uses connections inherited from its parent) and
closes it, releasing what it holds, on ``worker_process_shutdown`` / ``worker_shutdown``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from typing import Any

from celery import Celery, Task, signals

from embedded_service.cluster import BlockingClusterSlots, ClusterLease
from embedded_service.cluster.url import is_cluster_url
from embedded_service.errors import QueueFull, SlotTimeout

__all__ = ["SlotTask", "backoff_s", "close_worker_slots", "worker_slots"]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_slots: dict[tuple[int, str], BlockingClusterSlots] = {}
_held = threading.local()


def worker_slots(app: Celery) -> BlockingClusterSlots:
    """This process's ``BlockingClusterSlots`` for ``app.conf.slotdeck_url`` (else ``$SLOTDECK_STORE``).

    Created on first use in each process; one inherited through ``fork`` is never reused.
    Raises ``ValueError`` when no URL is configured, and what ``ClusterSlots.open`` raises.
    """
    url = app.conf.get("slotdeck_url") or os.environ.get("SLOTDECK_STORE", "")
    if not is_cluster_url(url):
        raise ValueError("SlotTask needs app.conf.slotdeck_url (or SLOTDECK_STORE) = 'redis://host:port/db?namespace=name'")
    key = (os.getpid(), url)
    with _lock:
        slots = _slots.get(key)
        if slots is None:  # a parent's entry stays untouched: finalizing its sockets here could hurt the parent
            slots = _slots[key] = BlockingClusterSlots(url, **(app.conf.get("slotdeck_options") or {}))
        return slots


def close_worker_slots(**_: Any) -> None:
    """Release this process's slots and close its connections (Celery's shutdown signals call it)."""
    with _lock:
        mine = [k for k in _slots if k[0] == os.getpid()]
        closing = [_slots.pop(k) for k in mine]
    for slots in closing:
        slots.close()


signals.worker_process_shutdown.connect(close_worker_slots, weak=False)
signals.worker_shutdown.connect(close_worker_slots, weak=False)


def backoff_s(retries: int, base_s: float, max_s: float) -> float:
    """Seconds before retry number ``retries + 1``: ``min(max_s, base_s * 2**retries)``, half of it random."""
    cap = min(max_s, base_s * 2 ** min(retries, 32))
    return cap / 2 + random.uniform(0, cap / 2)


class SlotTask(Task):
    """A Celery task base class whose body runs inside a global slot of ``slot_queue``; see the module doc."""

    slot_queue: str | None = None
    slot_wait_s: float = 0.0
    slot_priority: int = 0
    slot_max_retries: int = 50
    slot_backoff_s: float = 1.0
    slot_backoff_max_s: float = 60.0

    @property
    def slot_lease(self) -> ClusterLease:
        """The slot the running task holds (``fence``, ``lost``, ``raise_if_lost()``); RuntimeError outside the body."""
        stack: list[ClusterLease] = getattr(_held, "stack", [])
        if not stack:
            raise RuntimeError(f"{self.name} holds no slot here: slot_lease is only set inside the task body")
        return stack[-1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.slot_queue:
            raise ValueError(f"{self.name}: SlotTask needs slot_queue='name' (app.task keyword or class attribute)")
        slots = worker_slots(self.app)
        request = self.request
        try:
            lease = slots.acquire(
                self.slot_queue,
                owner=f"{self.name}[{request.id}]"[:200],
                priority=self.slot_priority,
                timeout_s=self.slot_wait_s,
            )
        except (SlotTimeout, QueueFull) as exc:
            countdown = backoff_s(request.retries, self.slot_backoff_s, self.slot_backoff_max_s)
            raise self.retry(exc=exc, countdown=countdown, max_retries=self.slot_max_retries) from None
        stack = _held.__dict__.setdefault("stack", [])
        stack.append(lease)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            stack.pop()
            with contextlib.suppress(Exception):  # the lease then returns after its TTL
                slots.release(lease)
            if lease.lost:
                log.warning(
                    "task %s[%s] lost its %r slot while running (%s): it ran partly without it",
                    self.name,
                    request.id,
                    self.slot_queue,
                    lease.lost_reason,
                )
