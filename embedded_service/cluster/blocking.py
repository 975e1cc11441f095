"""BlockingClusterSlots: ClusterSlots for threads and Celery tasks (no asyncio in the caller).

One private event loop on a daemon thread (a `LoopThread`) runs the asyncio ClusterSlots; every method blocks the
calling thread until its coroutine finishes and raises the same errors (UnknownQueue, QueueFull,
SlotTimeout, RedisNotSafe). Usable from many threads at once. In a forking worker pool (Celery
prefork, gunicorn) create it in each child after the fork (e.g. Celery's ``worker_process_init``
signal), never in the parent: a loop thread and sockets do not survive a fork.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from embedded_service.cluster.slots import ClusterLease, ClusterSlots
from embedded_service.loopthread import LoopThread

T = TypeVar("T")


class BlockingClusterSlots:
    """``with BlockingClusterSlots(url) as slots: with slots.slot("llm", timeout_s=30) as lease: ...``

    Keyword arguments are ClusterSlots'. Opens at construction (raises what ``ClusterSlots.open`` raises).
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        self._slots = ClusterSlots(url, **kwargs)
        self._done: asyncio.Event | None = None
        self._host = LoopThread("slotdeck-cluster", "the cluster client")
        self._host.start(self._main)

    async def _main(self, ready: Callable[[], None]) -> None:
        await self._slots.open()
        self._done = asyncio.Event()
        ready()
        await self._done.wait()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._host.call(coro)  # a wait given up (Ctrl-C) cancels the coroutine

    @property
    def proc_id(self) -> str:
        return self._slots.proc_id

    def configure_queue(
        self,
        name: str,
        *,
        limit: int,
        max_waiting: int | None = None,
        paused: bool | None = None,
        rate: float | None = None,
        burst: int = 1,
        timeout_s: float | None = None,
    ) -> None:
        self._run(
            self._slots.configure_queue(
                name, limit=limit, max_waiting=max_waiting, paused=paused, rate=rate, burst=burst, timeout_s=timeout_s
            )
        )

    def set_limit(self, name: str, limit: int) -> None:
        self._run(self._slots.set_limit(name, limit))

    def pause(self, name: str) -> None:
        self._run(self._slots.pause(name))

    def resume(self, name: str) -> None:
        self._run(self._slots.resume(name))

    def acquire(
        self,
        queue: str,
        *,
        owner: str = "",
        priority: int = 0,
        timeout_s: float | None = None,
        ttl_s: float | None = None,
    ) -> ClusterLease:
        return self._run(self._slots.acquire(queue, owner=owner, priority=priority, timeout_s=timeout_s, ttl_s=ttl_s))

    def renew(self, lease: ClusterLease, ttl_s: float | None = None) -> None:
        self._run(self._slots.renew(lease, ttl_s))

    def cancel(self, item_id: str) -> bool:
        return self._run(self._slots.cancel(item_id))

    def detail(self, queue: str, limit: int = 1000) -> dict[str, list[dict[str, Any]]]:
        return self._run(self._slots.detail(queue, limit))

    def release(self, lease: ClusterLease) -> None:
        self._run(self._slots.release(lease))

    def revoke(self, lease_id: str, reason: str = "revoked by operator") -> bool:
        return self._run(self._slots.revoke(lease_id, reason))

    @contextlib.contextmanager
    def slot(
        self, queue: str, *, owner: str = "", priority: int = 0, timeout_s: float | None = None
    ) -> Iterator[ClusterLease]:
        lease = self.acquire(queue, owner=owner, priority=priority, timeout_s=timeout_s)
        try:
            yield lease
        finally:
            self.release(lease)

    def snapshot(self) -> dict[str, Any]:
        return self._run(self._slots.snapshot())

    def close(self) -> None:
        """Release this process's leases and stop the loop thread. Idempotent."""
        if not self._host.running or self._done is None:
            return
        with contextlib.suppress(Exception):
            self._run(self._slots.close())
        self._host.call_soon(self._done.set)
        self._host.join(timeout=10)

    def __enter__(self) -> BlockingClusterSlots:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
