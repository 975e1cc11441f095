"""What a restart (kill -9 included) must not break: limits, fences and totals.

- **Remote leases** (granted over HTTP, with a TTL) are stored before the
  holder is told of them and forgotten when they end. A restarted service
  takes them back: each holds its slot until its holder renews or releases it,
  or until it expires, at the latest one full TTL after the restart (renewals
  are not stored, so each restored lease gets one TTL from the restart).
  Persisting them was chosen over holding all admission for one TTL after each
  start: a restart then costs nothing when no remote lease was out, the server
  still knows (and accepts the renewal of) a lease it granted, and a slot comes
  back as soon as its holder releases it instead of after a blanket wait.
- **Fences** only grow: fences are reserved durably in blocks of `FENCE_BLOCK`;
  a restart continues after the last reservation, so no fence is handed out twice.
- **Totals and marks** are saved for the queues that changed only, on every
  sample tick and with every stored lease. A total is stored *reserved*, as a
  ceiling above its live value (the way fences are): a queue whose counters
  moved since the last tick stores each moved counter plus twice what it moved
  by in that tick (at least `TOTALS_RESERVE`), and once the queue is quiet for a
  tick its exact values. A read shows live totals without writing anything as
  long as they stay under their stored ceilings (`sync_shown`); only a burst
  that outran its reservation, or a new high-water mark, makes the read store
  first. A crash then restarts from the ceilings: no total anyone saw goes
  backwards, and a busy queue's totals may be ahead by what was reserved (about
  two seconds of its traffic). A clean stop stores the exact values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from operator import attrgetter

from .engine import Lease, SlotEngine
from .engine.clock import Clock
from .engine.queues import QueueState
from .errors import StoreFault
from .model import HeldLease, Marks, Totals
from .stores import Store

log = logging.getLogger("slotdeck.restart")

FENCE_BLOCK = 1_000_000  # fences reserved per durable write; a new block is reserved when half is used
TOTALS_RESERVE = 16  # a counter that moved since the last tick is stored at least this far above its value

_TOTALS = tuple(Totals.model_fields)
Counts = tuple[int, ...]  # a queue's counters in `_TOTALS` order


_read_counts = attrgetter(*_TOTALS)  # one C call per queue: reads look at every queue that may have moved


def _counts(state: QueueState) -> Counts:
    counts: Counts = _read_counts(state)
    return counts


def _as_totals(counts: Counts) -> Totals:
    return Totals(**dict(zip(_TOTALS, counts, strict=True)))


class RestartKeeper:
    """Stores remote leases, fence reservations and changed queue state for one `SlotService`."""

    def __init__(self, engine: SlotEngine, store: Store, clock: Clock) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.holders: dict[str, str] = {}  # restored lease id -> token name that made it (for the API)
        self._pending: dict[str, HeldLease | None] = {}  # lease id -> to store, or None: to forget
        # queue -> (marks key, stored counters: ceilings at or above the live ones) as durable now
        self._stored: dict[str, tuple[tuple[object, ...], Counts]] = {}
        self._at_tick: dict[str, Counts] = {}  # queue -> its counters at the last tick's save
        self._checked_version = -1  # engine version whose figures sync_shown() found covered
        self._ticked_version = -1  # engine version of the last full tick (nothing moved since: only _loose to do)
        self._loose: set[str] = set()  # queues stored with ceilings above their counters (a tick makes them exact)
        self._lock = asyncio.Lock()
        self._reserving: asyncio.Task[None] | None = None
        self._reserved = 0
        self.last_saved_queues = 0  # how many queues the last save wrote (0 on an idle tick)

    # ------------------------------------------------------------------ start

    async def restore(self) -> int:
        """At start, after queues and totals are loaded: reserve fences, take back remote leases.

        Returns how many leases came back."""
        engine = self.engine
        for name, state in engine.queues.items():
            self._stored[name] = (state.marks_key(), _counts(state))
        stored_fence = await self.store.load_fence()
        leases = await self.store.load_leases()
        top = max([stored_fence, engine.fence, *(held.fence for held in leases)])
        engine.fence = top
        await self._reserve(top)
        now = self.clock.time()
        restored, gone = 0, []
        for held in leases:
            expires_at = max(held.expires_at, now + held.ttl_s)
            lease = engine.restore_lease(
                held.id,
                held.queue,
                held.owner,
                held.priority,
                held.fence,
                tuple(held.devices),
                held.gpu_mem_mib,
                held.granted_at,
                held.waited_s,
                held.ttl_s,
                expires_at,
            )
            if lease is None:
                gone.append(held.id)
                continue
            restored += 1
            if held.holder is not None:
                self.holders[held.id] = held.holder
        if gone:
            await self.store.save_leases([], gone)
        if restored:
            log.warning(
                "took back %d remote lease(s) granted before the restart; each holds its slot until "
                "renewed, released or expired",
                restored,
            )
        engine.on_remote_end = self._ended
        engine.fence_low = self._fence_low
        return restored

    # ----------------------------------------------------------------- leases

    def granted(self, lease: Lease, holder: str | None) -> None:
        """A remote lease is about to be handed to its holder: store it (`sync()` before answering)."""
        if lease.id not in self.engine.leases or lease.ttl_s is None or lease.expires_at is None:
            return
        self._pending[lease.id] = HeldLease(
            id=lease.id,
            queue=lease.queue,
            owner=lease.owner,
            priority=lease.priority,
            fence=lease.fence,
            devices=list(lease.devices),
            gpu_mem_mib=lease.gpu_mem_mib,
            granted_at=lease.granted_at,
            waited_s=lease.waited_s,
            ttl_s=lease.ttl_s,
            expires_at=lease.expires_at,
            holder=holder,
        )

    def _ended(self, lease: Lease) -> None:
        self._pending[lease.id] = None
        self.holders.pop(lease.id, None)

    # ----------------------------------------------------------------- fences

    def _fence_low(self, fence: int) -> None:
        if self._reserving is None or self._reserving.done():
            self._reserving = asyncio.ensure_future(self._reserve(fence))

    async def _reserve(self, fence: int) -> None:
        reserved = fence + FENCE_BLOCK
        await self.store.save_fence(reserved)
        self._reserved = max(self._reserved, reserved)
        self.engine.fence_guard = self._reserved - FENCE_BLOCK // 2

    # ------------------------------------------------------------------ saves

    def _targets(self, only: Iterable[str] | None, mode: str) -> dict[str, tuple[tuple[object, ...], Marks, Counts]]:
        """What to store for the queues (all, or `only` these) whose stored marks or counters should change.

        `mode` "tick": a queue that moved since the last tick stores ceilings (each moved counter plus twice its
        move, at least TOTALS_RESERVE), a quiet one its exact counters; "shown": only queues whose live figures
        are not covered by what is stored (a new mark, a counter above its ceiling), with fresh ceilings;
        "exact" (close): the exact counters."""
        engine = self.engine
        if only is None and mode == "tick" and engine.version == self._ticked_version:
            only = list(self._loose)  # an idle tick: only the queues still stored ahead (10,000 idle queues: none)
        elif only is None and mode == "tick":
            self._ticked_version = engine.version
        if only is None:
            chosen: Iterable[tuple[str, QueueState]] = engine.queues.items()
        else:
            chosen = [(name, engine.queues[name]) for name in only if name in engine.queues]
        targets: dict[str, tuple[tuple[object, ...], Marks, Counts]] = {}
        for name, state in chosen:
            live, marks_key = _counts(state), state.marks_key()
            stored_marks, stored = self._stored.get(name, (None, None))
            marks_moved = stored_marks != marks_key
            if mode == "exact":
                target = live
            else:
                before = self._at_tick.get(name, stored or live)
                if mode == "shown" and not marks_moved and stored is not None and all(map(int.__le__, live, stored)):
                    continue  # covered: showing it needs no write
                target = tuple(
                    value if value == was else value + max(TOTALS_RESERVE, 2 * (value - was))
                    for value, was in zip(live, before, strict=True)
                )
                if mode == "shown" and stored is not None:
                    target = tuple(map(max, target, stored))  # a read never lowers a ceiling
            if mode == "tick":
                self._at_tick[name] = live
            if marks_moved or target != stored:
                targets[name] = (marks_key, state.marks, target)
        return targets

    async def sync(self, only: Iterable[str] | None = None, mode: str = "tick") -> None:
        """Store pending lease changes and the marks/totals of all queues (or `only` these) that need it, in one
        transaction; returns once durable. `mode`: see `_targets` (the sample tick and lease grants: "tick")."""
        async with self._lock:
            pending, self._pending = self._pending, {}
            targets = self._targets(only, mode)
            self.last_saved_queues = len(targets)
            if not pending and not targets:
                return
            put = [held for held in pending.values() if held is not None]
            drop = [lease_id for lease_id, held in pending.items() if held is None]
            states = {name: (marks, _as_totals(counts)) for name, (_key, marks, counts) in targets.items()}
            try:
                await self.store.save_leases(put, drop, states)
            except BaseException:
                for lease_id, held in pending.items():  # keep them for the next try
                    self._pending.setdefault(lease_id, held)
                self._ticked_version = -1  # the next tick looks at every queue again
                raise
            queues = self.engine.queues
            for name, (marks_key, _marks, counts) in targets.items():
                self._stored[name] = (marks_key, counts)
                state = queues.get(name)
                if state is not None and counts != _counts(state):
                    self._loose.add(name)
                else:
                    self._loose.discard(name)

    async def sync_shown(self, only: Iterable[str] | None = None) -> None:
        """Before a read shows totals and marks: store those not yet covered by what is stored (usually none: no
        write). A store that refuses the write (`StoreFault`: disk full, ...) does not fail the read: the store's
        health reports the fault and the next tick tries again."""
        version = self.engine.version
        if version == self._checked_version:
            return
        with contextlib.suppress(StoreFault):
            await self.sync(only, mode="shown")
            if only is None:
                self._checked_version = version

    def forget_queue(self, name: str) -> None:
        self._stored.pop(name, None)
        self._at_tick.pop(name, None)
        self._loose.discard(name)

    async def close(self) -> None:
        if self._reserving is not None:
            await asyncio.gather(self._reserving, return_exceptions=True)
        await self.sync(mode="exact")
