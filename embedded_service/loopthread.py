"""`LoopThread`: one asyncio event loop on a daemon thread, hosting a service for threaded callers.

`BlockingSlotService` (a service for Flask views, Celery tasks, the Qt thread), `EmbeddedServer`
(the service plus its HTTP API, for the desktop and tests) and `BlockingClusterSlots` each run on
one: `start(main)` runs the coroutine `main(ready)` on the new loop and returns once `main` called `ready()` (or raises what
`main` raised before that); `call()` hands coroutines to that loop and blocks the calling thread
only, so waiting never spins and never holds the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

log = logging.getLogger("slotdeck.loopthread")

T = TypeVar("T")
Main = Callable[[Callable[[], None]], Coroutine[Any, Any, None]]  # main(ready): call ready() once serving


class LoopThread:
    """A loop thread named `name`; `loop` is None until started (RuntimeError from `loop` then)."""

    def __init__(self, name: str, what: str = "the service") -> None:
        self.name = name
        self.what = what  # for the error of a call before start: "the service is not started"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self.what} is not started")
        return self._loop

    @property
    def running(self) -> bool:
        """Started and its `main` not returned yet."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, main: Main, timeout: float | None = None) -> None:
        """Run `main(ready)` on a new loop in a daemon thread; return once it called `ready()`.

        Raises what `main` raised before it was ready (the thread has ended then), RuntimeError when it
        returned without being ready, TimeoutError after `timeout` seconds."""
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(main, ready), name=self.name, daemon=True)
        self._thread.start()
        ready.result(timeout)

    def _run(self, main: Main, ready: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop

        def signal() -> None:
            if not ready.done():
                ready.set_result(None)

        try:
            loop.run_until_complete(main(signal))
            if not ready.done():
                ready.set_exception(RuntimeError(f"{self.what} stopped before it was ready"))
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.exception("%s stopped with an error", self.what)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def call(
        self, coro: Coroutine[Any, Any, T], timeout: float | None = None, undo: Callable[[T], object] | None = None
    ) -> T:
        """Run a coroutine on the loop and block this thread for its result.

        If this thread stops waiting (timeout, KeyboardInterrupt) the coroutine is
        cancelled, so a waiter does not stay behind. A result that was already
        produced but never reached this thread (a lease granted in that instant)
        is passed to `undo` on the loop, so it is not leaked either.
        """
        try:
            loop = self.loop
        except RuntimeError:
            coro.close()  # never run: no "was never awaited" warning
            raise
        produced: list[T] = []

        async def run() -> T:
            result = await coro
            produced.append(result)
            return result

        def undo_undelivered() -> None:
            if produced and undo is not None:
                undo(produced[0])

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        try:
            return future.result(timeout)
        except BaseException:
            if future.cancel():
                # Runs after the task's own cancellation (callbacks keep their order).
                loop.call_soon_threadsafe(undo_undelivered)
            raise

    def call_soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Schedule a plain function on the loop, from any thread (returns at once)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def join(self, timeout: float | None = None) -> None:
        """Wait for `main` to return (up to `timeout` seconds); the loop is closed then."""
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None
                self._loop = None
