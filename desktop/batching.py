"""Lines gathered into batches, so a burst (a 500-line log tail) reaches the view as one signal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

FLUSH_AFTER_S = 0.05  # lines arriving within this of the first of a batch go together; the pane lags no more


class LineBatch:
    """`add` lines; `deliver` gets them in order, a batch at most `FLUSH_AFTER_S` after its first line."""

    def __init__(self, deliver: Callable[[list[str]], None], after_s: float = FLUSH_AFTER_S) -> None:
        self._deliver = deliver
        self._after_s = after_s
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, line: str) -> None:
        self._lines.append(line)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._after_s, self.flush)

    def flush(self) -> None:
        """Deliver what is gathered now (also at the end of the stream)."""
        self.drop()
        if self._lines:
            lines, self._lines = self._lines, []
            self._deliver(lines)

    def drop(self) -> None:
        """Forget the pending timer (the stream was abandoned; its lines are no longer wanted)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
