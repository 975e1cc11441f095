"""Time as the engine sees it: epoch seconds that never jump, plus timers on the event loop.

The engine never reads `time` or calls `asyncio.sleep` directly, so tests can
swap in `ManualClock` and check a 300 s timeout without waiting 300 s.

`RealClock.time()` is the wall clock read once at start plus the monotonic time
elapsed since: waiter deadlines, rate buckets, stuck flags and lease expiry are
differences of it, so setting the system clock back an hour (or forward) changes
none of them. The price: a wall-clock step after start is not followed by the
times shown (granted_at, created_at, ...) until the next start.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall time in seconds since the epoch."""

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run `callback(*args)` on the event loop after `delay` seconds."""


class RealClock:
    """Monotonic time anchored to the epoch at construction; timers are the running loop's own (also monotonic)."""

    def __init__(self) -> None:
        self._anchor = time.time() - time.monotonic()

    def time(self) -> float:
        """Epoch seconds as of start + monotonic seconds since: read on every grant and release."""
        return self._anchor + time.monotonic()

    def wall(self) -> float:
        """The system's wall clock now (for display only; may jump)."""
        return time.time()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback, *args)


class _ManualTimer:
    __slots__ = ("args", "callback", "cancelled", "order", "when")

    def __init__(self, when: float, order: int, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.order = order
        self.callback = callback
        self.args = args
        self.cancelled = False

    def __lt__(self, other: _ManualTimer) -> bool:
        return (self.when, self.order) < (other.when, other.order)

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told to; `advance()` fires due timers in order."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._timers: list[_ManualTimer] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        timer = _ManualTimer(self._now + max(0.0, delay), next(self._order), callback, args)
        heapq.heappush(self._timers, timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, firing each due timer at its own instant."""
        target = self._now + seconds
        while self._timers and self._timers[0].when <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, timer.when)
            timer.callback(*timer.args)
        self._now = target

    def pending(self) -> int:
        return sum(1 for t in self._timers if not t.cancelled)
