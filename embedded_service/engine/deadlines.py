"""Wait deadlines of all waiters behind a single timer.

A timer per waiter would be armed and cancelled on every hand-off; here one
timer waits for the earliest deadline. Deadlines usually arrive in order (a
queue's waiters share its timeout), so they go to a FIFO at O(1); only one
shorter than the last goes to a heap. Entries of waiters that were granted or
left are dropped lazily, and in bulk when they outnumber the live ones.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import cast

from .clock import Clock, TimerHandle
from .queues import TIMER_SLACK_S, Waiter


class Deadlines:
    def __init__(self, clock: Clock, expire: Callable[[Waiter, float], None]) -> None:
        self._clock = clock
        self._expire = expire  # called for each waiter still waiting at its deadline
        self._in_order: deque[Waiter] = deque()
        self._out_of_order: list[tuple[float, int, Waiter]] = []
        self._timer: TimerHandle | None = None
        self._armed_for = float("inf")

    def __len__(self) -> int:
        return len(self._in_order) + len(self._out_of_order)

    def watch(self, waiter: Waiter, now: float, live: int) -> None:
        """Start watching a new waiter's deadline; `live` is how many waiters wait in all."""
        deadline = cast(float, waiter.deadline)  # only waiters with a deadline are watched here
        in_order = self._in_order
        while in_order and in_order[0].done:  # waiters granted in line order leave from the front: drop them now
            in_order.popleft()
        if not in_order or deadline >= cast(float, in_order[-1].deadline):
            in_order.append(waiter)
        else:
            heapq.heappush(self._out_of_order, (deadline, waiter.seq, waiter))
        if deadline < self._armed_for:
            self._arm(now)
        elif len(in_order) + len(self._out_of_order) > 2 * live + 64:
            self._in_order = deque(w for w in in_order if not w.done)
            self._out_of_order = [entry for entry in self._out_of_order if not entry[2].done]
            heapq.heapify(self._out_of_order)

    def _earliest(self) -> Waiter | None:
        in_order, out_of_order = self._in_order, self._out_of_order
        while in_order and in_order[0].done:
            in_order.popleft()
        while out_of_order and out_of_order[0][2].done:
            heapq.heappop(out_of_order)
        if not out_of_order:
            return in_order[0] if in_order else None
        if in_order and cast(float, in_order[0].deadline) <= out_of_order[0][0]:
            return in_order[0]
        return out_of_order[0][2]

    def _arm(self, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        earliest = self._earliest()
        self._armed_for = cast(float, earliest.deadline) if earliest is not None else float("inf")
        if earliest is not None:
            self._timer = self._clock.call_later(max(TIMER_SLACK_S, self._armed_for - now), self._due)

    def _due(self) -> None:
        """Expire every waiter whose deadline has come, then wait for the next one."""
        self._timer = None
        now = self._clock.time()
        while (earliest := self._earliest()) is not None and cast(float, earliest.deadline) <= now + TIMER_SLACK_S:
            if self._in_order and self._in_order[0] is earliest:
                self._in_order.popleft()
            else:
                heapq.heappop(self._out_of_order)
            self._expire(earliest, now)
        self._arm(now)
