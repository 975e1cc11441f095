"""A blocking facade for threaded code (Flask/WSGI views, Celery tasks, the Qt thread).

The service keeps running on its own event loop in a background thread; calls
from other threads are handed to that loop and the caller blocks on a future,
so waiting never spins and never holds the GIL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from .engine import Lease
from .model import History, QueueConfig, Snapshot
from .service import SlotService

T = TypeVar("T")


class BlockingSlotService:
    """Owns a loop thread running a `SlotService`; every method blocks the calling thread only."""

    def __init__(self, service: SlotService | None = None, **service_kwargs: Any) -> None:
        self._service_kwargs = service_kwargs
        self._service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def service(self) -> SlotService:
        if self._service is None:
            raise RuntimeError("the service is not started")
        return self._service

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the service is not started")
        return self._loop

    def start(self) -> BlockingSlotService:
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="slotdeck-loop", daemon=True)
        self._thread.start()
        ready.result()
        return self

    def _run(self, ready: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            if self._service is None:
                self._service = SlotService(**self._service_kwargs)
            loop.run_until_complete(self._service.start())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self.call(self.service.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop = None
        self._thread = None

    def __enter__(self) -> BlockingSlotService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(
        self, coro: Coroutine[Any, Any, T], timeout: float | None = None, undo: Callable[[T], object] | None = None
    ) -> T:
        """Run a coroutine on the service's loop and block this thread for its result.

        If this thread stops waiting (timeout, KeyboardInterrupt) the coroutine is
        cancelled, so a waiter does not stay behind. A result that was already
        produced but never reached this thread (a lease granted in that instant)
        is passed to `undo` on the loop, so it is not leaked either.
        """
        produced: list[T] = []

        async def run() -> T:
            result = await coro
            produced.append(result)
            return result

        def undo_undelivered() -> None:
            if produced and undo is not None:
                undo(produced[0])

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            if future.cancel():
                # Runs after the task's own cancellation (callbacks keep their order).
                self.loop.call_soon_threadsafe(undo_undelivered)
            raise

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
