"""A fixed-size ring of 1 Hz samples, turned into series for graph backfill."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..model import DeviceSeries, History, QueueSeries

DEFAULT_HISTORY_POINTS = 3600  # one hour at 1 Hz


@dataclass(slots=True, frozen=True)
class Sample:
    t: float
    queues: dict[str, tuple[int, int, int]]  # name -> (in_use, waiting, limit)
    devices: dict[str, tuple[float | None, float, float | None]]  # index -> (used, reserved, util)
    host_cpu_pct: float | None
    host_memory_used_mib: float | None


QueueFigures = tuple[int, int, int]  # (in_use, waiting, limit)
DEFAULT_HISTORY_BUDGET = 1_000_000  # queue changes kept at most (~100-150 MB); idle queues add none


@dataclass(slots=True)
class _Point:
    t: float
    changed: dict[str, QueueFigures | None]  # queues whose figures changed since the point before (None: gone)
    devices: dict[str, tuple[float | None, float, float | None]]
    host_cpu_pct: float | None
    host_memory_used_mib: float | None


class HistoryRing:
    """Up to `points` samples (one hour at 1 Hz by default), each storing only the queues that changed.

    A queue whose figures stay the same costs nothing per point, so 10,000 idle queues
    do not grow the ring. Memory is bounded by `budget`, the most queue changes kept
    in all: when busy queues exceed it the oldest points go first (the ring covers
    less time rather than growing).
    """

    def __init__(self, points: int = DEFAULT_HISTORY_POINTS, budget: int = DEFAULT_HISTORY_BUDGET) -> None:
        self.points = points
        self.budget = budget
        self._points: deque[_Point] = deque()
        self._base: dict[str, QueueFigures] = {}  # every queue's figures just before the oldest point
        self._last: dict[str, QueueFigures] = {}  # ... and after the newest
        self.entries = 0  # queue changes held now (what `budget` bounds)

    def __len__(self) -> int:
        return len(self._points)

    def add(self, sample: Sample) -> None:
        """Add a sample of every queue's figures now (only the changes are kept)."""
        changed = self.changes(sample.queues)
        self.add_changes(sample.t, changed, sample.devices, sample.host_cpu_pct, sample.host_memory_used_mib)

    def changes(self, queues: dict[str, QueueFigures]) -> dict[str, QueueFigures | None]:
        """What differs between `queues` (every queue's figures) and the newest point: None for a queue gone."""
        return changes_between(self._last, queues)

    @property
    def last(self) -> dict[str, QueueFigures]:
        """Every queue's figures at the newest point (do not change it)."""
        return self._last

    def rebase(self, base: dict[str, QueueFigures]) -> None:
        """Drop every point; `base` is every queue's figures before the next one added."""
        self._points.clear()
        self._base = dict(base)
        self._last = dict(base)
        self.entries = 0

    def add_changes(
        self,
        t: float,
        changed: dict[str, QueueFigures | None],
        devices: dict[str, tuple[float | None, float, float | None]],
        host_cpu_pct: float | None,
        host_memory_used_mib: float | None,
    ) -> None:
        """Add a point given as the queues whose figures changed since the newest one (None: gone)."""
        last = self._last
        for name, figures in changed.items():
            if figures is None:
                last.pop(name, None)
            else:
                last[name] = figures
        self._points.append(_Point(t, changed, devices, host_cpu_pct, host_memory_used_mib))
        self.entries += len(changed)
        while len(self._points) > self.points or (self.entries > self.budget and len(self._points) > 1):
            oldest = self._points.popleft()
            self.entries -= len(oldest.changed)
            _apply(self._base, oldest.changed)

    def series(self, seconds: float, now: float) -> History:
        """Samples newer than `now - seconds`; a queue or device absent at some instant reads as 0/None there."""
        since = now - seconds
        state = dict(self._base)
        picked: list[_Point] = []
        states: list[dict[str, QueueFigures]] = []
        for point in self._points:
            _apply(state, point.changed)
            if point.t >= since:
                picked.append(point)
                states.append(state.copy() if point.changed or not states else states[-1])
        queue_names = sorted({name for st in {id(st): st for st in states}.values() for name in st})
        device_names = sorted({name for s in picked for name in s.devices}, key=int)
        zero = (0, 0, 0)
        queues = {
            name: QueueSeries(
                in_use=[st.get(name, zero)[0] for st in states],
                waiting=[st.get(name, zero)[1] for st in states],
                limit=[st.get(name, zero)[2] for st in states],
            )
            for name in queue_names
        }
        devices = {
            name: DeviceSeries(
                memory_used_mib=[s.devices.get(name, (None, 0.0, None))[0] for s in picked],
                memory_reserved_mib=[s.devices.get(name, (None, 0.0, None))[1] for s in picked],
                utilization_pct=[s.devices.get(name, (None, 0.0, None))[2] for s in picked],
            )
            for name in device_names
        }
        return History(
            t=[s.t for s in picked],
            queues=queues,
            devices=devices,
            host_cpu_pct=[s.host_cpu_pct for s in picked],
            host_memory_used_mib=[s.host_memory_used_mib for s in picked],
        )


def changes_between(last: dict[str, QueueFigures], queues: dict[str, QueueFigures]) -> dict[str, QueueFigures | None]:
    """The queues of `queues` whose figures differ from `last`, and None for each queue of `last` gone."""
    changed: dict[str, QueueFigures | None] = {name: v for name, v in queues.items() if last.get(name) != v}
    if len(last) + len(changed) > len(queues):  # some queue may be gone
        changed.update({name: None for name in last if name not in queues})
    return changed


def _apply(state: dict[str, QueueFigures], changed: dict[str, QueueFigures | None]) -> None:
    for name, figures in changed.items():
        if figures is None:
            state.pop(name, None)
        else:
            state[name] = figures
