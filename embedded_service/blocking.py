"""A blocking facade for threaded code (Flask/WSGI views, Celery tasks, the Qt thread).

The service keeps running on its own event loop in a background thread (a
`LoopThread`); calls from other threads are handed to that loop and the caller
blocks on a future, so waiting never spins and never holds the GIL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .engine import Lease
from .loopthread import LoopThread
from .model import History, QueueConfig, Snapshot
from .service import SlotService

T = TypeVar("T")


class BlockingSlotService:
    """Owns a loop thread running a `SlotService`; every method blocks the calling thread only."""

    def __init__(self, service: SlotService | None = None, **service_kwargs: Any) -> None:
        self._service_kwargs = service_kwargs
        self._service = service
        self._host = LoopThread("slotdeck-loop")
        self._done: asyncio.Event | None = None

    @property
    def service(self) -> SlotService:
        if self._service is None:
            raise RuntimeError("the service is not started")
        return self._service

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._host.loop

    def start(self) -> BlockingSlotService:
        self._host.start(self._main)
        return self

    async def _main(self, ready: Callable[[], None]) -> None:
        if self._service is None:
            self._service = SlotService(**self._service_kwargs)
        await self._service.start()
        self._done = asyncio.Event()
        ready()
        await self._done.wait()

    def stop(self) -> None:
        if not self._host.running or self._done is None:
            return
        self.call(self.service.close())
        self._host.call_soon(self._done.set)
        self._host.join()

    def __enter__(self) -> BlockingSlotService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(
        self, coro: Coroutine[Any, Any, T], timeout: float | None = None, undo: Callable[[T], object] | None = None
    ) -> T:
        """Run a coroutine on the service's loop and block this thread for its result (see `LoopThread.call`:
        a wait given up cancels it, and a result it produced meanwhile is passed to `undo`)."""
        return self._host.call(coro, timeout, undo)

    def run_sync(self, fn: Any, *args: Any) -> Any:
        """Run a plain function on the loop (engine state is only touched there)."""

        async def call() -> Any:
            return fn(*args)

        return self.call(call())

    @contextmanager
    def slot(self, queue: str, **kwargs: Any) -> Iterator[Lease]:
        """`with svc.slot("chat", owner=..., priority=..., timeout_s=...) as lease:` from any thread."""
        lease = self.acquire(queue, **kwargs)
        try:
            yield lease
        finally:
            self.run_sync(self.service.release, lease.id)

    def acquire(self, queue: str, **kwargs: Any) -> Lease:
        return self.call(self.service.acquire(queue, **kwargs), undo=self.service.release)

    def release(self, lease: Lease | str) -> bool:
        return self.run_sync(self.service.release, lease)

    def configure_queue(self, name: str, **fields: Any) -> QueueConfig:
        return self.run_sync(lambda: self.service.configure_queue(name, **fields))

    def set_limit(self, name: str, limit: int) -> QueueConfig:
        return self.call(self.service.set_limit(name, limit))

    def pause(self, name: str) -> QueueConfig:
        return self.call(self.service.pause(name))

    def resume(self, name: str) -> QueueConfig:
        return self.call(self.service.resume(name))

    def cancel(self, item_id: str) -> bool:
        return self.run_sync(self.service.cancel, item_id)

    def snapshot(self) -> Snapshot:
        return self.run_sync(self.service.snapshot)

    def history(self, seconds: float = 600) -> History:
        return self.run_sync(self.service.history, seconds)
