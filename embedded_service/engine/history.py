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


class HistoryRing:
    def __init__(self, points: int = DEFAULT_HISTORY_POINTS) -> None:
        self._samples: deque[Sample] = deque(maxlen=points)

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)

    def series(self, seconds: float, now: float) -> History:
        """Samples newer than `now - seconds`; a queue or device absent at some instant reads as 0/None there."""
        since = now - seconds
        picked = [s for s in self._samples if s.t >= since]
        queue_names = sorted({name for s in picked for name in s.queues})
        device_names = sorted({name for s in picked for name in s.devices}, key=int)
        queues = {
            name: QueueSeries(
                in_use=[s.queues.get(name, (0, 0, 0))[0] for s in picked],
                waiting=[s.queues.get(name, (0, 0, 0))[1] for s in picked],
                limit=[s.queues.get(name, (0, 0, 0))[2] for s in picked],
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
