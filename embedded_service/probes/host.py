"""Host and per-job process figures from psutil, without blocking.

CPU percentages are deltas between two readings. psutil's own non-blocking
`cpu_percent(interval=None)` keeps its previous reading per *thread*, and the
service samples from whichever pool thread is free, so the host figure is
computed here from our own previous `cpu_times()`. Per-process figures use
cached `psutil.Process` objects, which keep their previous reading themselves.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psutil

from ..model import HostInfo

log = logging.getLogger("slotdeck.probes.host")

MIB = 1024 * 1024


def _busy_and_total(times: Any) -> tuple[float, float]:
    """CPU seconds busy and in all, as psutil counts them (guest time is already in user time)."""
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


class HostProbe:
    """Blocking host probe (`sample()`), plus `process_tree_usage(pid)` for jobs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_cpu = _busy_and_total(psutil.cpu_times())
        self._cpu_count = psutil.cpu_count()
        self._trees: dict[int, dict[int, psutil.Process]] = {}

    def sample(self) -> HostInfo:
        """CPU % since the previous sample (or since construction), memory and 1-minute load."""
        busy, total = _busy_and_total(psutil.cpu_times())
        with self._lock:
            last_busy, last_total = self._last_cpu
            self._last_cpu = (busy, total)
            self._forget_dead_trees()
        elapsed = total - last_total
        cpu_pct = round(min(100.0, max(0.0, (busy - last_busy) / elapsed * 100)), 1) if elapsed > 0 else None
        memory = psutil.virtual_memory()
        return HostInfo(
            cpu_pct=cpu_pct,
            cpu_count=self._cpu_count,
            memory_total_mib=memory.total // MIB,
            memory_used_mib=(memory.total - memory.available) // MIB,
            load_1m=psutil.getloadavg()[0],
        )

    def process_tree_usage(self, pid: int) -> tuple[float, float] | None:
        """CPU % and RSS MiB of a process and all its descendants, or None if it is gone.

        CPU % is since the previous call for this tree (0 for a process seen
        the first time), so calling it once per sample tick gives real figures.
        """
        try:
            root = psutil.Process(pid)
            members = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            with self._lock:
                self._trees.pop(pid, None)
            return None
        cpu = 0.0
        rss = 0
        with self._lock:
            cached = self._trees.get(pid, {})
            tree: dict[int, psutil.Process] = {}
            for fresh in members:
                known = cached.get(fresh.pid)
                process = known if known is not None and known == fresh else fresh  # same pid and start time
                try:
                    with process.oneshot():
                        cpu += process.cpu_percent(interval=None)
                        rss += process.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue  # exited or not ours since the listing: not part of the tree now
                tree[process.pid] = process
            if pid not in tree:
                self._trees.pop(pid, None)
                return None
            self._trees[pid] = tree
        return cpu, rss / MIB

    def tree_pids(self, pid: int) -> frozenset[int]:
        """The pids of `pid`'s tree as seen by the last `process_tree_usage(pid)` (for GPU memory per job)."""
        with self._lock:
            return frozenset(self._trees.get(pid, ()))

    def _forget_dead_trees(self) -> None:
        for pid, tree in list(self._trees.items()):
            if not tree[pid].is_running():
                del self._trees[pid]
