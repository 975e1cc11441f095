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
- **Totals and marks** are saved for the queues that changed only: on every
  sample tick, with every stored lease, and before a read shows them
  (`sync()`), so a total that anyone saw never goes backwards after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from .engine import Lease, SlotEngine
from .engine.clock import Clock
from .engine.queues import QueueState
from .errors import StoreFault
from .model import HeldLease, Marks, Totals
from .stores import Store

log = logging.getLogger("slotdeck.restart")

FENCE_BLOCK = 1_000_000  # fences reserved per durable write; a new block is reserved when half is used


def _fingerprint(state: QueueState) -> tuple[object, ...]:
    m = state.marks
    return (
        state.granted,
        state.released,
        state.timed_out,
        state.rejected,
        state.cancelled,
        state.expired,
        state.revoked,
        state.bad_releases,
        state.jobs_failed,
        state.jobs_timed_out,
        m.in_use,
        m.in_use_at,
        m.waiting,
        m.waiting_at,
        m.reset_at,
    )


class RestartKeeper:
    """Stores remote leases, fence reservations and changed queue state for one `SlotService`."""

    def __init__(self, engine: SlotEngine, store: Store, clock: Clock) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.holders: dict[str, str] = {}  # restored lease id -> token name that made it (for the API)
        self._pending: dict[str, HeldLease | None] = {}  # lease id -> to store, or None: to forget
        self._saved: dict[str, tuple[object, ...]] = {}  # queue -> fingerprint of its last saved state
        self._saved_version = -1
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
            self._saved[name] = _fingerprint(state)
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

    def changed_states(self, only: Iterable[str] | None = None) -> dict[str, tuple[Marks, Totals]]:
        """Marks and totals of the queues (all, or `only` these) whose figures changed since last saved."""
        engine = self.engine
        if engine.version == self._saved_version:
            return {}
        changed: dict[str, tuple[Marks, Totals]] = {}
        saved = self._saved
        if only is None:
            chosen: Iterable[tuple[str, QueueState]] = engine.queues.items()
        else:
            chosen = [(name, engine.queues[name]) for name in only if name in engine.queues]
        for name, state in chosen:
            key = _fingerprint(state)
            if saved.get(name) != key:
                saved[name] = key
                changed[name] = (state.marks.model_copy(), state.totals())
        if only is None:
            self._saved_version = engine.version
        return changed

    async def sync(self, only: Iterable[str] | None = None) -> None:
        """Store pending lease changes and the changed totals/marks of all queues (or `only` these) now,
        in one transaction; returns once durable."""
        async with self._lock:
            pending, self._pending = self._pending, {}
            states = self.changed_states(only)
            self.last_saved_queues = len(states)
            if not pending and not states:
                return
            put = [held for held in pending.values() if held is not None]
            drop = [lease_id for lease_id, held in pending.items() if held is None]
            try:
                await self.store.save_leases(put, drop, states)
            except BaseException:
                for lease_id, held in pending.items():  # keep them for the next try
                    self._pending.setdefault(lease_id, held)
                for name in states:
                    self._saved.pop(name, None)
                self._saved_version = -1
                raise

    async def sync_shown(self, only: Iterable[str] | None = None) -> None:
        """`sync` before a read shows totals; a store that refuses the write (`StoreFault`: disk full, ...) does not
        fail the read: the store's health reports the fault and the next tick tries again."""
        with contextlib.suppress(StoreFault):
            await self.sync(only)

    def forget_queue(self, name: str) -> None:
        self._saved.pop(name, None)

    async def close(self) -> None:
        if self._reserving is not None:
            await asyncio.gather(self._reserving, return_exceptions=True)
        await self.sync()
