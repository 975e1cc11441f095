"""Two admission engines behind one small interface, for the engine contract suite and the
stateful comparison: the in-process ``SlotEngine`` (on a ``ManualClock``) and ``ClusterSlots``
on a private Redis.

Time: both move only when told. The in-process engine has a ``ManualClock``; for Redis the
functions are loaded with their clock (``TIME``) shifted by a test-only key, ``sdtest:skew_us``,
that ``advance()`` raises, then every queue is settled at once (what the reaper's tick does).
TTLs and timeouts in the tests are tens of seconds and more, so the real time that passes while
a test runs (milliseconds) decides nothing. The only mock is this clock, at its boundary.

Owners must be unique per acquire: they are how a test names an acquire in both engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from embedded_service.cluster import ClusterSlots
from embedded_service.cluster import library as cluster_library
from embedded_service.engine import ManualClock
from embedded_service.engine.core import SlotEngine

TOTALS = ("granted", "released", "timed_out", "rejected", "cancelled", "expired", "revoked", "bad_releases")
_TIME_LINE = "return tonumber(t[1]) * 1000000 + tonumber(t[2])"
SKEWED_LIBRARY = cluster_library.LIBRARY.replace(
    _TIME_LINE, _TIME_LINE + " + tonumber(redis.call('GET', 'sdtest:skew_us') or '0')"
)
assert SKEWED_LIBRARY != cluster_library.LIBRARY, "the functions' clock line moved: update engines.py"


@dataclass
class Held:
    """A granted slot in either engine."""

    id: str
    fence: int
    owner: str
    raw: Any


@dataclass
class View:
    """What an engine reports about one queue; fences are compared by order, not value."""

    limit: int
    paused: bool
    in_use: int
    waiting: int
    holders: list[str]  # owners, by fence
    waiters: list[tuple[str, int]]  # (owner, priority), in grant order
    marks: tuple[int, int]  # high-water (in_use, waiting)
    totals: dict[str, int]
    waiter_ids: dict[str, str] = field(default_factory=dict)  # owner -> waiter id
    holder_ids: dict[str, str] = field(default_factory=dict)  # owner -> lease id

    def same(self) -> tuple[Any, ...]:
        return (self.limit, self.paused, self.in_use, self.waiting, self.holders, self.waiters, self.marks, self.totals)


class MemoryEngine:
    """The in-process engine. Queue default wait: a day (the cluster's None: no timeout)."""

    name = "memory"

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.engine = SlotEngine(clock=self.clock)

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        for waiter in list(self.engine.waiters.values()):
            self.engine.withdraw(waiter.id)
        await self.settle()

    async def configure(
        self, queue: str, *, limit: int, max_waiting: int | None = None, paused: bool | None = None,
        rate: float | None = None, burst: int = 1, timeout_s: float | None = None,
    ) -> None:
        fields: dict[str, Any] = {"limit": limit, "max_waiting": max_waiting, "rate": rate, "burst": burst}
        if paused is not None:
            fields["paused"] = paused
        if timeout_s is not None:
            fields["timeout_s"] = timeout_s
        elif queue not in self.engine.queues:
            fields["timeout_s"] = 86_400
        self.engine.configure_queue(queue, **fields)

    async def set_limit(self, queue: str, limit: int) -> None:
        self.engine.set_limit(queue, limit)

    async def pause(self, queue: str) -> None:
        self.engine.pause(queue)

    async def resume(self, queue: str) -> None:
        self.engine.resume(queue)

    async def _acquire(self, queue: str, owner: str, priority: int, timeout_s: float | None, ttl_s: float | None) -> Held:
        lease = await self.engine.acquire(queue, owner=owner, priority=priority, timeout_s=timeout_s, ttl_s=ttl_s)
        return Held(lease.id, lease.fence, owner, lease)

    async def start(
        self, queue: str, *, owner: str, priority: int = 0, timeout_s: float | None = None, ttl_s: float | None = None
    ) -> asyncio.Task[Held]:
        """Begin an acquire and return once it was granted, refused or is in line."""
        task = asyncio.create_task(self._acquire(queue, owner, priority, timeout_s, ttl_s))
        await self.settle()
        return task

    async def release(self, held: Held) -> None:
        self.engine.release(held.id)

    async def renew(self, held: Held, ttl_s: float | None = None) -> None:
        self.engine.renew(held.id, ttl_s)

    async def revoke(self, lease_id: str) -> bool:
        return self.engine.revoke(lease_id)

    async def cancel(self, item_id: str) -> bool:
        return self.engine.cancel(item_id)

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.settle()

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def view(self, queue: str) -> View:
        engine = self.engine
        state = engine.queue(queue)
        stats = engine.queue_stats(state, self.clock.time())
        leases = sorted((lease for lease in engine.leases.values() if lease.queue == queue), key=lambda lease: lease.fence)
        waiters = state.live_waiters()
        totals = stats.totals.model_dump()
        return View(
            limit=stats.config.limit,
            paused=stats.config.paused,
            in_use=stats.in_use,
            waiting=stats.waiting,
            holders=[str(lease.owner) for lease in leases],
            waiters=[(str(w.owner), w.priority) for w in waiters],
            marks=(stats.marks.in_use, stats.marks.waiting),
            totals={k: totals[k] for k in TOTALS},
            waiter_ids={str(w.owner): w.id for w in waiters},
            holder_ids={str(lease.owner): lease.id for lease in leases},
        )


class RedisEngine:
    """ClusterSlots on a private Redis whose functions read the shifted clock (see the module doc)."""

    name = "redis"
    LONG_S = 1e6  # lease, claim and process TTLs: longer than any test advances the clock

    def __init__(self, url: str) -> None:
        self.url = url
        self.slots = ClusterSlots(url, lease_ttl_s=self.LONG_S, claim_ttl_s=self.LONG_S, proc_ttl_s=10 * self.LONG_S)
        self._pending: dict[str, asyncio.Task[Held]] = {}
        self._queues: set[str] = set()

    async def open(self) -> None:
        from embedded_service.cluster import slots as slots_module

        original = slots_module.LIBRARY
        slots_module.LIBRARY = SKEWED_LIBRARY
        try:
            await self.slots.open()
        finally:
            slots_module.LIBRARY = original

    async def close(self) -> None:
        for task in self._pending.values():
            task.cancel()
        for task in self._pending.values():
            with contextlib.suppress(BaseException):
                await task
        await self.slots.close()

    async def configure(
        self, queue: str, *, limit: int, max_waiting: int | None = None, paused: bool | None = None,
        rate: float | None = None, burst: int = 1, timeout_s: float | None = None,
    ) -> None:
        self._queues.add(queue)
        await self.slots.configure_queue(
            queue, limit=limit, max_waiting=max_waiting, paused=paused, rate=rate, burst=burst, timeout_s=timeout_s
        )

    async def set_limit(self, queue: str, limit: int) -> None:
        await self.slots.set_limit(queue, limit)

    async def pause(self, queue: str) -> None:
        await self.slots.pause(queue)

    async def resume(self, queue: str) -> None:
        await self.slots.resume(queue)

    async def _acquire(self, queue: str, owner: str, priority: int, timeout_s: float | None, ttl_s: float | None) -> Held:
        lease = await self.slots.acquire(queue, owner=owner, priority=priority, timeout_s=timeout_s, ttl_s=ttl_s)
        return Held(lease.lease_id, lease.fence, owner, lease)

    async def start(
        self, queue: str, *, owner: str, priority: int = 0, timeout_s: float | None = None, ttl_s: float | None = None
    ) -> asyncio.Task[Held]:
        """Begin an acquire and return once it was granted, refused or is in line in Redis."""
        task = asyncio.create_task(self._acquire(queue, owner, priority, timeout_s, ttl_s))
        self._pending[owner] = task
        deadline = time.monotonic() + 10
        while not task.done():
            detail = await self.slots.detail(queue)
            if any(w["owner"] == owner for w in detail["waiters"]):
                break
            assert time.monotonic() < deadline, f"acquire of {owner} neither ended nor queued"
            await asyncio.sleep(0.002)
        await self.settle()
        return task

    async def release(self, held: Held) -> None:
        await self.slots.release(held.raw)

    async def renew(self, held: Held, ttl_s: float | None = None) -> None:
        await self.slots.renew(held.raw, ttl_s)

    async def revoke(self, lease_id: str) -> bool:
        return await self.slots.revoke(lease_id)

    async def cancel(self, item_id: str) -> bool:
        return await self.slots.cancel(item_id)

    async def advance(self, seconds: float) -> None:
        assert self.slots._r is not None
        await self.slots._r.incrby("sdtest:skew_us", int(seconds * 1_000_000))
        # what the elected reaper does each second: settle every queue (expired holders, waiters past
        # their deadline, a rate that admits again)
        await self.slots._fcall("sd_tick", self.slots._epoch, self.slots.proc_id, 10**12, 60_000, *sorted(self._queues))
        await self.settle()

    async def settle(self) -> None:
        """Wait until every acquire that Redis no longer has in line has ended here (its grant,
        time-out or cancel went through this process's inbox)."""
        deadline = time.monotonic() + 10
        while True:
            waiting: set[str] = set()
            for queue in self._queues:
                waiting.update(w["owner"] for w in (await self.slots.detail(queue))["waiters"])
            late = [o for o, t in self._pending.items() if not t.done() and o not in waiting]
            if not late:
                break
            assert time.monotonic() < deadline, f"acquires {late} never heard their outcome"
            await asyncio.sleep(0.002)
        for owner in [o for o, t in self._pending.items() if t.done()]:
            del self._pending[owner]
        await asyncio.sleep(0)

    async def view(self, queue: str) -> View:
        snap = (await self.slots.snapshot())["queues"][queue]
        detail = await self.slots.detail(queue)
        return View(
            limit=snap["limit"],
            paused=snap["paused"],
            in_use=snap["in_use"],
            waiting=snap["waiting"],
            holders=[h["owner"] for h in detail["holders"]],
            waiters=[(w["owner"], w["priority"]) for w in detail["waiters"]],
            marks=(snap["marks"]["in_use"], snap["marks"]["waiting"]),
            totals={k: snap["totals"][k] for k in TOTALS},
            waiter_ids={w["owner"]: w["id"] for w in detail["waiters"]},
            holder_ids={h["owner"]: h["id"] for h in detail["holders"]},
        )


Engine = MemoryEngine | RedisEngine
