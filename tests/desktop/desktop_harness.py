"""Shared by the desktop tests: a qasync loop runner and real SlotDeck servers over loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import qasync

from embedded_service.api.embedded import EmbeddedServer
from embedded_service.model import Marks, QueueConfig, QueueStats, Totals

T = TypeVar("T")


def run_on(loop: qasync.QEventLoop, coro: Awaitable[T]) -> T:
    """`loop.run_until_complete(coro)` without qasync's last `processEvents`, which runs due task steps
    with no running event loop (anyio then raises NoEventLoopError inside httpx and the task dies; seen as
    a log that never arrived). The steps left wait for the next run, as they would in the app's loop."""
    future = asyncio.ensure_future(coro, loop=loop)
    future.add_done_callback(lambda _: loop.stop())
    loop.run_forever()
    if not future.done():
        raise RuntimeError("the event loop stopped before the coroutine finished")
    return future.result()


class QtLoop:
    """Runs coroutines on the qasync loop, so Qt widgets and asyncio work interleave as in the app."""

    def __init__(self, loop: qasync.QEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Awaitable[T], timeout: float = 30.0) -> T:
        return run_on(self.loop, asyncio.wait_for(coro, timeout))

    def until(self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> None:
        async def wait() -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                await asyncio.sleep(0.02)

        self.run(wait(), timeout + 5)


def start_server(store: str = "memory://", **kwargs: Any) -> EmbeddedServer:
    options: dict[str, Any] = {"probes": False, "write_local": False, "grace_s": 0.5, "snapshot_hz": 20}
    options.update(kwargs)
    return EmbeddedServer(store, sample_interval_s=0.1, **options).start()


class Confirmations:
    """Stands in for the modal confirmation dialog, the one thing the desktop tests fake: answers from
    `replies` in order, then `default`; keeps every (title, text) it was asked."""

    def __init__(self, default: bool = True) -> None:
        self.replies: list[bool] = []
        self.default = default
        self.asked: list[tuple[str, str]] = []

    def __call__(self, parent: object, title: str, text: str) -> bool:
        self.asked.append((title, text))
        return self.replies.pop(0) if self.replies else self.default


def queue_stats(
    name: str, limit: int = 4, in_use: int = 0, waiting: int = 0, hwm: int = 0, paused: bool = False, stuck: int = 0
) -> QueueStats:
    """A queue as a snapshot shows it (its peaks default to what it has now, the waiting peak to `hwm` if higher)."""
    return QueueStats(
        config=QueueConfig(name=name, limit=limit, paused=paused),
        in_use=in_use,
        waiting=waiting,
        owners=1,
        marks=Marks(in_use=in_use, waiting=max(waiting, hwm)),
        totals=Totals(granted=7),
        stuck=stuck,
    )

