"""Which queued jobs are engine waiters right now: a bounded window per queue.

The store may hold tens of thousands of queued jobs; only the first few of
each queue, in (priority, seq) order, wait in the engine, where they compete
with interactive waiters under the queue's limit, pause and priorities. The
window is refilled from the store's indexed claim query as it drains.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..engine import Lease
from ..engine.queues import Waiter
from ..model import Job
from .execute import RunControl


def order_key(job: Job) -> tuple[int, int]:
    return (job.priority, job.seq)


@dataclass(eq=False)
class Held:
    """A job this runner holds: waiting in the engine, running, or being settled."""

    job: Job
    waiter: Waiter | None = None
    lease: Lease | None = None
    run: asyncio.Task[None] | None = None
    control: RunControl = field(default_factory=RunControl)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    cpu_pct: float | None = None
    rss_mib: float | None = None
    gpu_mem_used_mib: int | None = None


@dataclass(eq=False)
class QueueWindow:
    waiting: dict[str, Held] = field(default_factory=dict)
    # True once every due queued job of the queue is known to be in `waiting` (or running):
    # then a new submit may join directly; otherwise the store decides the order.
    complete: bool = False
    _tail: Held | None = None

    def add(self, held: Held) -> None:
        self.waiting[held.job.id] = held
        tail = self._tail
        if tail is not None and order_key(held.job) > order_key(tail.job):
            self._tail = held

    def remove(self, job_id: str) -> Held | None:
        held = self.waiting.pop(job_id, None)
        if held is not None and held is self._tail:
            self._tail = None
        return held

    def tail(self) -> Held | None:
        """The waiting job that would run last (cached until it leaves)."""
        if self._tail is None and self.waiting:
            self._tail = max(self.waiting.values(), key=lambda held: order_key(held.job))
        return self._tail
