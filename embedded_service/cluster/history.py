"""History in redis mode: one elected instance writes a point of the cluster view each second into Redis, and
every instance shows what Redis keeps, so `/v1/history` (`SlotService.history()`) answers the same everywhere.

Keys (see cluster/library.py): ``P:hist:lead`` (the writer's process id, ``SET NX PX`` `LEAD_TTL_MS`, renewed
at each sample), ``P:hist:seq`` (point numbers), ``P:hist:pts`` (the points, at most the writer's
``history_points``) and ``P:hist:base`` (each queue's figures before the oldest point). Every instance asks to
lead at each sample: when the writer dies its key expires and another writes within `LEAD_TTL_MS` plus one
sample interval (a writer that closes resigns: another takes over at its next sample). A writer's first point
holds every queue (``"f": 1``), later ones only the queues whose figures changed, as `HistoryRing` keeps them.
A point: ``{"n", "t" (Redis time, s), "c": {queue: [in_use, waiting, limit] | null (gone)}, "d": {device index:
[used MiB, reserved MiB, util %]}, "h": [host CPU %, host memory used MiB]}`` (devices and host: the writer's).

Each instance mirrors the points in a `HistoryRing`: the new ones since its newest (by number), or all again after
a gap (trimmed past it, Redis data lost).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from ..engine.history import HistoryRing, QueueFigures, Sample, changes_between
from ..errors import SlotDeckError
from .slots import _NET_ERRORS

if TYPE_CHECKING:
    from .admission import ClusterAdmission

log = logging.getLogger("slotdeck.cluster.history")

LEAD_TTL_MS = 3000  # a writer that stops renewing is replaced this long after (plus one sample)
_FAILURES = (*_NET_ERRORS, ResponseError, SlotDeckError)


class ClusterHistory:
    """One instance's side: `record` each sample (written when this instance leads), `ring` the mirror read
    from Redis (`sync`). `points`: the most points kept (the service's ``history_points``)."""

    def __init__(self, admission: ClusterAdmission, points: int) -> None:
        self.admission = admission
        self.points = points
        self.ring = HistoryRing(points)
        self.writing = False  # whether this instance wrote the newest sample it took
        self._seq = 0  # number of the mirror's newest point
        self._written: dict[str, QueueFigures] | None = None  # the figures of this writer's last point
        self._lock = asyncio.Lock()
        self._failing = False
        self._running: set[asyncio.Task[None]] = set()  # Redis calls in flight (never cancelled half-way)

    @property
    def _keys(self) -> tuple[str, str, str]:
        prefix = self.admission.slots.prefix
        return f"{prefix}:hist:seq", f"{prefix}:hist:pts", f"{prefix}:hist:base"

    async def _shielded(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` to its end even when the caller is cancelled (a redis-py call cancelled half-way can
        hang its connection); `resign` waits for it."""
        task = asyncio.ensure_future(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        await asyncio.shield(task)

    async def record(self, sample: Sample) -> None:
        """Write `sample` when this instance leads (or now becomes the writer), then read the new points.
        Never raises for an unreachable Redis (logged once; the next sample tries again)."""
        await self._shielded(self._record(sample))

    async def _record(self, sample: Sample) -> None:
        try:
            await self._write(sample)
            await self.sync()
        except _FAILURES as exc:
            if not self._failing:
                log.warning("history not written or read (Redis: %s); retrying each sample", exc)
            self._failing = True
            return
        self._failing = False

    async def _write(self, sample: Sample) -> None:
        slots = self.admission.slots
        lead = int(await slots._fcall("sd_lead", slots.proc_id, LEAD_TTL_MS))
        written = self._written if lead == 1 else None  # a new term starts with a full point
        self._written = None
        self.writing = False
        if lead == 0:
            return
        point: dict[str, Any] = {"f": 1, "c": sample.queues}
        if written is not None:
            point = {"c": changes_between(written, sample.queues)}
        point["d"] = sample.devices
        point["h"] = [sample.host_cpu_pct, sample.host_memory_used_mib]
        if int(await slots._fcall("sd_hist_add", slots.proc_id, self.points, json.dumps(point))):
            self._written = dict(sample.queues)
            self.writing = True

    async def resign(self) -> None:
        """Stop writing (at close, after the calls in flight): another instance takes over at its next sample."""
        if self._running:
            await asyncio.wait(list(self._running), timeout=10)
        slots = self.admission.slots
        self.writing = False
        self._written = None
        await slots._fcall("sd_lead", slots.proc_id, 0)  # a no-op unless this instance leads

    async def refresh(self) -> None:
        """`sync`, for a reader that must answer anyway: Redis away, the mirror stays as last read (logged)."""
        await self._shielded(self._refresh())

    async def _refresh(self) -> None:
        try:
            await self.sync()
        except _FAILURES as exc:
            log.warning("history not read from Redis (%s); answering the last reading", exc)

    async def sync(self) -> None:
        """Bring the mirror up to what Redis keeps (one round trip when nothing is new)."""
        async with self._lock:
            client = self.admission.slots.client
            seq_key, pts_key, base_key = self._keys
            async with client.pipeline(transaction=True) as pipe:
                pipe.get(seq_key)
                pipe.llen(pts_key)
                seq_raw, length = await pipe.execute()
            seq = int(seq_raw or 0)
            if seq == self._seq:
                return
            if 0 < self._seq < seq:
                rows: list[str] = await client.lrange(pts_key, -min(length, seq - self._seq + 8), -1)  # type: ignore[assignment]
                new = [p for p in map(json.loads, rows) if p["n"] > self._seq]
                if new and all(p["n"] == self._seq + 1 + k for k, p in enumerate(new)):
                    for p in new:
                        self._apply(p)
                    return
            async with client.pipeline(transaction=True) as pipe:  # a gap: all of it again
                pipe.hgetall(base_key)
                pipe.lrange(pts_key, 0, -1)
                base, rows = await pipe.execute()
            self.ring.rebase({name: _figures(json.loads(v)) for name, v in base.items()})
            self._seq = 0
            for row in rows:
                self._apply(json.loads(row))

    def _apply(self, point: dict[str, Any]) -> None:
        changed = {name: None if v is None else _figures(v) for name, v in point.get("c", {}).items()}
        if point.get("f"):
            changed = self.ring.changes({name: v for name, v in changed.items() if v is not None})
        devices = {index: (v[0], float(v[1]), v[2]) for index, v in point.get("d", {}).items()}
        cpu, memory = point.get("h") or (None, None)
        self.ring.add_changes(float(point["t"]), changed, devices, cpu, memory)
        self._seq = int(point["n"])


def _figures(value: list[int]) -> QueueFigures:
    return int(value[0]), int(value[1]), int(value[2])
