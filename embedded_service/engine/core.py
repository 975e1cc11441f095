"""The admission engine: queues, waiters, leases and devices on one event loop.

All state is mutated from the loop that owns the engine, so nothing here takes
a lock. Ownership of a slot moves to a waiter *at release time* (the grant is
made inside `release`), which is what keeps a releaser that re-acquires at once
from jumping the queue and keeps a woken-then-cancelled waiter from leaking
the slot (the lost-wakeup class of CPython gh-90155).

GPU fairness policy: within a queue, grants follow (priority, arrival) strictly.
Across queues, waiters that need GPUs are considered in (priority, arrival)
order too, and the first one that does not fit *reserves*: no GPU waiter behind
it is admitted until it fits. A large request therefore cannot starve behind a
stream of small ones; the price is that GPUs may sit idle while memory drains
for it. Waiters without GPU needs are never held back by this, nor by a waiter
that needs a lost GPU (it could not fit however long the others waited).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import (
    LeaseGone,
    QueueBusy,
    QueueFull,
    SlotCancelled,
    SlotTimeout,
    UnknownQueue,
    UnknownWaiter,
)
from ..model import (
    DeviceInfo,
    DeviceSpec,
    LeaseInfo,
    QueueConfig,
    QueueStats,
    Totals,
    WaiterInfo,
    trusted,
)
from .clock import Clock, RealClock, TimerHandle
from .deadlines import Deadlines
from .devices import DevicePool
from .queues import QueueState, Waiter

log = logging.getLogger("slotdeck.engine")

ENDED_LEASES_KEPT = 10_000  # at least this many finished lease ids still answer "why is it gone"


@dataclass(eq=False, slots=True)
class Lease:
    """A granted slot. `on_cancel` is how an operator's cancel reaches its holder."""

    id: str
    queue: str
    owner: str | None
    priority: int
    fence: int
    devices: tuple[int, ...]
    gpu_mem_mib: int
    granted_at: float
    waited_s: float
    ttl_s: float | None = None
    expires_at: float | None = None
    job_id: str | None = None
    timer: TimerHandle | None = None
    on_cancel: Callable[[], Any] | None = None
    cancel_requested: bool = False
    shown: LeaseInfo | None = None  # the last `info()`; only expires_at, job_id and stuck change after the grant

    def info(self, now: float, stuck_after_s: float | None) -> LeaseInfo:
        """What snapshots show of this lease; the same object while nothing in it changed (so never change it)."""
        stuck = stuck_after_s is not None and now - self.granted_at > stuck_after_s
        shown = self.shown
        if (
            shown is not None
            and shown.stuck is stuck
            and shown.expires_at == self.expires_at
            and shown.job_id == self.job_id
        ):
            return shown
        self.shown = shown = trusted(
            LeaseInfo,
            {
                "id": self.id,
                "queue": self.queue,
                "owner": self.owner,
                "priority": self.priority,
                "fence": self.fence,
                "devices": list(self.devices),
                "gpu_mem_mib": self.gpu_mem_mib,
                "host": None,  # in-process: the one host; redis mode names it (cluster/desk.py)
                "granted_at": self.granted_at,
                "waited_s": self.waited_s,
                "expires_at": self.expires_at,
                "job_id": self.job_id,
                "stuck": stuck,
            },
        )
        return shown


class SlotEngine:
    """Pure admission core. No I/O: stores, probes and HTTP live outside and call in."""

    def __init__(
        self, clock: Clock | None = None, devices: list[DeviceSpec] | None = None, pool: DevicePool | None = None
    ) -> None:
        self.clock: Clock = clock or RealClock()
        self.queues: dict[str, QueueState] = {}
        self.leases: dict[str, Lease] = {}
        self.waiters: dict[str, Waiter] = {}
        self.pool = pool if pool is not None else DevicePool()
        if devices:
            self.pool.configure(devices)
        self.version = 0  # bumped on every change; snapshots carry it as `seq`
        self.fence = 0
        # fences above this need a new durable reservation first (see restart.py); `fence_low` asks for it
        self.fence_guard = 2**62
        self.fence_low: Callable[[int], None] | None = None
        self.on_remote_end: Callable[[Lease], None] | None = None  # a lease with a TTL ended (any reason)
        self.unattributed_bad_releases = 0
        self._prefix = secrets.token_hex(3)
        self._arrivals = itertools.count(1)  # a waiter's place in line, also its id
        # lease id -> (queue, reason), in two generations: when the young one is full
        # it becomes the old one, so between N and 2N ids are kept at O(1) per lease.
        self._ended: dict[str, tuple[str, str]] = {}
        self._ended_old: dict[str, tuple[str, str]] = {}
        self.deadlines = Deadlines(self.clock, self._time_out)
        self._gpu_waiting = 0
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []

    # ----------------------------------------------------------------- queues

    def configure_queue(self, name: str, **fields: Any) -> QueueConfig:
        """Create a queue or change some of its fields; a change that frees capacity admits at once."""
        state = self.queues.get(name)
        if state is None:
            config = QueueConfig(name=name, **fields)
            state = QueueState(config=config)
            state.apply_rate(self.clock.time())
            self.queues[name] = state
        else:
            config = QueueConfig.model_validate({**state.config.model_dump(), **fields, "name": name})
            rate_changed = (config.rate, config.burst) != (state.config.rate, state.config.burst)
            state.config = config
            if rate_changed:
                state.apply_rate(self.clock.time())
                if state.rate_timer is not None:  # armed for the old rate; the pump below re-arms it
                    state.rate_timer.cancel()
                    state.rate_timer = None
        self._changed()
        self._pump(state)
        return config

    def queue(self, name: str) -> QueueState:
        state = self.queues.get(name)
        if state is None:
            raise UnknownQueue(name)
        return state

    def delete_queue(self, name: str, force: bool = False) -> None:
        state = self.queue(name)
        if (state.in_use or state.waiting) and not force:
            raise QueueBusy(f"queue {name!r} has {state.in_use} holder(s) and {state.waiting} waiter(s)")
        del self.queues[name]  # first, so that nothing below grants inside the queue on its way out
        if state.rate_timer is not None:
            state.rate_timer.cancel()
        for waiter in state.live_waiters():
            self._end_waiter(waiter, SlotCancelled(name, "queue deleted"))
        for lease in list(state.held.values()):
            self._drop_lease(lease, "revoked")
        self._changed()
        self._pump()  # freed devices, or a GPU waiter that reserved them, may let other queues in

    def set_limit(self, name: str, limit: int) -> QueueConfig:
        return self.configure_queue(name, limit=limit)

    def pause(self, name: str) -> QueueConfig:
        return self.configure_queue(name, paused=True)

    def resume(self, name: str) -> QueueConfig:
        return self.configure_queue(name, paused=False)

    def reset_marks(self, name: str) -> None:
        self.queue(name).reset_marks(self.clock.time())
        self._changed()

    # ---------------------------------------------------------------- acquire

    def enqueue(
        self,
        queue: str,
        *,
        owner: str | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
        gpus: int = 0,
        gpu_mem_mib: int = 0,
        ttl_s: float | None = None,
        job_id: str | None = None,
    ) -> Lease | Waiter:
        """Grant at once when nobody is ahead and a slot is free, else join the line."""
        state = self.queues.get(queue)
        if state is None:
            raise UnknownQueue(queue)
        if gpu_mem_mib and not gpus:
            gpus = 1
        if gpus:
            self.pool.check_possible(gpus, gpu_mem_mib)
        now = self.clock.time()
        config = state.config
        if not gpus and not state.waiting and state.in_use < config.limit and not config.paused:
            bucket = state.bucket
            if bucket is None or bucket.available(now):
                if bucket is not None:
                    bucket.take(now)
                return self._grant(state, owner, priority, (), 0, now, 0.0, ttl_s, job_id)
        if config.max_waiting is not None and state.waiting >= config.max_waiting:
            state.rejected += 1
            self._changed()
            raise QueueFull(queue, state.waiting, state.est_wait_s())
        wait = config.timeout_s if timeout_s is None else timeout_s
        seq = next(self._arrivals)
        waiter = Waiter(  # positional: this is the hot path of every wait
            f"w{self._prefix}{seq:x}",
            queue,
            owner,
            priority,
            seq,
            gpus,
            gpu_mem_mib,
            now,
            now + wait,
            ttl_s,
            job_id,
            asyncio.get_running_loop().create_future(),
        )
        self.deadlines.watch(waiter, now, len(self.waiters))
        state.push(waiter)
        self.waiters[waiter.id] = waiter
        if gpus:
            self._gpu_waiting += 1
        if state.waiting + state.backlog > state.mark_waiting:
            state.note_waiting(now)
        self.version += 1
        if self.listeners:
            self._emit("waiting", {"waiter": waiter.id, "queue": queue, "owner": owner, "priority": priority})
        if gpus or (state.in_use < config.limit and not config.paused):
            self._pump(state, now)  # a line with a free slot: its head left (cancelled) or waits for GPUs
        return waiter

    async def acquire(self, queue: str, **kwargs: Any) -> Lease:
        """Enqueue and wait; `wait` inlined, as one coroutine less per wait shows in hand-off throughput."""
        result = self.enqueue(queue, **kwargs)
        if isinstance(result, Lease):
            return result
        try:
            return await result.future
        except asyncio.CancelledError:
            self.wait_cancelled(result)
            raise

    def wait_cancelled(self, waiter: Waiter) -> None:
        """The waiting task was cancelled: give back a grant it did not see, or leave the line."""
        future = waiter.future
        if future.done() and not future.cancelled() and future.exception() is None:
            self.release(future.result().id)
        elif not waiter.done:
            state = self.queues.get(waiter.queue)
            if state is not None:
                state.cancelled += 1
            self._end_waiter(waiter, None)

    async def poll(self, waiter_id: str, wait_s: float) -> Lease | None:
        """Wait up to `wait_s` for a waiter's grant without cancelling it (HTTP long-poll)."""
        waiter = self.waiters.get(waiter_id)
        if waiter is None:
            raise UnknownWaiter(waiter_id)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), wait_s)
        except TimeoutError:
            return None

    def expire_unpolled(self, waiter_id: str, ttl_s: float) -> None:
        """Drop a remote waiter unless it is polled again within `ttl_s`."""
        waiter = self.waiters.get(waiter_id)
        if waiter is None:
            return
        if waiter.poll_timer is not None:
            waiter.poll_timer.cancel()
        waiter.poll_timer = self.clock.call_later(ttl_s, self._abandon, waiter)

    def _abandon(self, waiter: Waiter, reason: str = "waiter was not polled in time") -> None:
        if not waiter.done:
            self.queues[waiter.queue].cancelled += 1
            self._end_waiter(waiter, SlotCancelled(waiter.queue, reason))
            if self.listeners:
                self._emit("cancelled", {"waiter": waiter.id, "queue": waiter.queue, "owner": waiter.owner})

    def abandon(self, waiter_id: str, reason: str) -> bool:
        """A remote waiter whose caller left (disconnected, gave up): out of line now, counted as cancelled."""
        waiter = self.waiters.get(waiter_id)
        if waiter is None:
            return False
        self._abandon(waiter, reason)
        return True

    def _time_out(self, waiter: Waiter, now: float) -> None:
        state = self.queues[waiter.queue]
        state.timed_out += 1
        waited = now - waiter.enqueued_at
        self._end_waiter(waiter, SlotTimeout(waiter.queue, waited, state.est_wait_s()))
        if self.listeners:
            self._emit("timed_out", {"waiter": waiter.id, "queue": waiter.queue, "owner": waiter.owner, "waited_s": waited})

    def _end_waiter(self, waiter: Waiter, error: BaseException | None) -> None:
        """Take a waiter out of line (timeout, cancel, abandon) and let the next ones in."""
        if waiter.done:
            return
        state = self.queues.get(waiter.queue)
        if state is not None:
            state.forget(waiter)
        else:
            waiter.done = True
        self._close_waiter(waiter)
        if error is not None and not waiter.future.done():
            waiter.future.set_exception(error)
            waiter.future.exception()  # a remote waiter nobody awaits must not log "never retrieved"
        self._changed()
        if state is not None:
            self._pump(state)

    def _close_waiter(self, waiter: Waiter) -> None:
        """Forget a waiter that left the line; its deadline entry is dropped lazily."""
        self.waiters.pop(waiter.id, None)
        if waiter.gpus:
            self._gpu_waiting -= 1
        if waiter.poll_timer is not None:
            waiter.poll_timer.cancel()

    # ----------------------------------------------------------------- grants

    def _grant(
        self,
        state: QueueState,
        owner: str | None,
        priority: int,
        devices: tuple[int, ...],
        gpu_mem_mib: int,
        now: float,
        waited: float,
        ttl_s: float | None,
        job_id: str | None,
    ) -> Lease:
        self.fence += 1
        fence = self.fence
        if fence > self.fence_guard and self.fence_low is not None:
            self.fence_low(fence)
        lease = Lease(  # positional: this is the hot path of every grant
            f"L{self._prefix}{fence:x}", state.config.name, owner, priority, fence, devices, gpu_mem_mib, now, waited
        )
        if job_id is not None:
            lease.job_id = job_id
        if ttl_s is not None:
            lease.ttl_s = ttl_s
            lease.expires_at = now + ttl_s
            lease.timer = self.clock.call_later(ttl_s, self._expire, lease)
        self.leases[lease.id] = state.held[lease.id] = lease
        in_use = state.in_use = state.in_use + 1
        state.granted += 1
        state.wait_samples.append(waited)
        if in_use > state.mark_in_use:
            state.note_in_use(now)
        self.version += 1
        if self.listeners:
            self._emit(
                "granted", {"lease": lease.id, "queue": lease.queue, "owner": owner, "waited_s": waited, "fence": fence}
            )
        return lease

    def _grant_waiter(self, state: QueueState, waiter: Waiter, devices: tuple[int, ...], now: float) -> None:
        """Hand the slot to the head of the line (`waiter` is what `state.head()` just returned)."""
        state.pop_head()
        waiter.done = True
        self._close_waiter(waiter)
        lease = self._grant(
            state,
            waiter.owner,
            waiter.priority,
            devices,
            waiter.gpu_mem_mib,
            now,
            now - waiter.enqueued_at,
            waiter.ttl_s,
            waiter.job_id,
        )
        if devices:
            self.pool.assign(lease.id, state.config.name, list(devices), waiter.gpu_mem_mib, waiter.job_id is not None)
        waiter.future.set_result(lease)

    def _rate_allows(self, state: QueueState, now: float) -> bool:
        """Whether the queue's rate lets one more in now; arms a timer for when it will if not."""
        bucket = state.bucket
        if bucket is not None and not bucket.available(now):
            if state.rate_timer is None:
                state.rate_timer = self.clock.call_later(bucket.delay_until_token(now), self._rate_refilled, state)
            return False
        return True

    def _rate_refilled(self, state: QueueState) -> None:
        state.rate_timer = None
        if self.queues.get(state.config.name) is state:
            self._pump(state)

    def _pump(self, state: QueueState | None = None, now: float | None = None) -> None:
        """Admit waiters while capacity allows. Called after every change that may free a slot."""
        if now is None:
            now = self.clock.time()
        if self._gpu_waiting == 0 and state is not None:
            self._pump_plain(state, now)
            return
        progress = True
        while progress:
            progress = False
            gpu_heads: list[tuple[Waiter, QueueState]] = []
            for queue_state in list(self.queues.values()):
                head = self._pump_plain(queue_state, now)
                if head is not None:
                    gpu_heads.append((head, queue_state))
            gpu_heads.sort(key=lambda pair: pair[0])
            for head, queue_state in gpu_heads:
                config = queue_state.config
                name, per_gpu = config.name, config.per_gpu
                if not self.pool.within_cap(head.gpus, name, per_gpu):
                    continue  # held by its own queue's per-GPU cap, like a limit: it reserves nothing
                devices = self.pool.fit(head.gpus, head.gpu_mem_mib, name, per_gpu, config.placement, now)
                if devices is None:
                    if not self.pool.possible_now(head.gpus, head.gpu_mem_mib):
                        continue  # it needs a lost GPU: it waits for it, but holds nobody back meanwhile
                    break  # it reserves: nothing behind it in GPU order goes first
                if queue_state.bucket is not None:
                    queue_state.bucket.take(now)
                self._grant_waiter(queue_state, head, tuple(devices), now)
                progress = True

    def _pump_plain(self, state: QueueState, now: float) -> Waiter | None:
        """Admit non-GPU heads of one queue; return an admissible GPU head left for the caller."""
        while state.waiting and not state.config.paused and state.in_use < state.config.limit:
            if state.bucket is not None and not self._rate_allows(state, now):
                return None
            head = state.head()
            if head is not None and head.future.done():
                head = self._live_head(state)
            if head is None:
                return None
            if head.gpus:
                return head
            if state.bucket is not None:
                state.bucket.take(now)
            self._grant_waiter(state, head, (), now)
        return None

    def _live_head(self, state: QueueState) -> Waiter | None:
        """The head that can still take a grant.

        A waiter whose task was cancelled has a cancelled future but runs its
        cleanup only on a later loop turn; granting to it would raise and leak
        the slot, so it leaves the line here and is counted as cancelled.
        """
        head = state.head()
        while head is not None and head.future.done():
            state.cancelled += 1
            state.forget(head)
            self._close_waiter(head)
            self._changed()
            head = state.head()
        return head

    # ---------------------------------------------------------------- release

    def release(self, lease_id: str, owner: str | None = None) -> bool:
        """Give a slot back. Double releases, releases by another owner and of dead leases do nothing and are counted."""
        lease = self.leases.get(lease_id)
        if lease is None or (owner is not None and lease.owner is not None and owner != lease.owner):
            self._count_bad_release(lease_id, lease)
            return False
        self._drop_lease(lease, "released")
        return True

    def _count_bad_release(self, lease_id: str, lease: Lease | None) -> None:
        ended = self._ended_entry(lease_id)
        queue = lease.queue if lease is not None else ended[0] if ended else None
        state = self.queues.get(queue) if queue is not None else None
        if state is not None:
            state.bad_releases += 1
        else:
            self.unattributed_bad_releases += 1
        self._changed()

    def _drop_lease(self, lease: Lease, reason: str) -> None:
        del self.leases[lease.id]
        if lease.ttl_s is not None and self.on_remote_end is not None:
            self.on_remote_end(lease)
        if lease.timer is not None:
            lease.timer.cancel()
        now = self.clock.time()
        state = self.queues.get(lease.queue)
        if lease.devices:
            self.pool.unassign(lease.id, lease.queue, lease.devices, lease.gpu_mem_mib)
        self._ended[lease.id] = (lease.queue, reason)
        if len(self._ended) >= ENDED_LEASES_KEPT:
            self._ended_old = self._ended
            self._ended = {}
        self.version += 1
        if self.listeners:
            self._emit(
                reason, {"lease": lease.id, "queue": lease.queue, "owner": lease.owner, "held_s": now - lease.granted_at}
            )
        if state is None:
            return
        del state.held[lease.id]
        state.in_use -= 1
        state.hold_samples.append(now - lease.granted_at)
        if reason == "released":
            state.released += 1
        elif reason == "expired":
            state.expired += 1
        elif reason == "revoked":
            state.revoked += 1
        if state.waiting or lease.devices:
            self._pump(None if lease.devices else state, now)

    def restore_lease(
        self,
        lease_id: str,
        queue: str,
        owner: str | None,
        priority: int,
        fence: int,
        devices: tuple[int, ...],
        gpu_mem_mib: int,
        granted_at: float,
        waited_s: float,
        ttl_s: float,
        expires_at: float,
    ) -> Lease | None:
        """Take back a remote lease granted before a restart: it holds its slot (and devices) until its
        holder renews or releases it or it expires at `expires_at`. None when its queue is gone."""
        state = self.queues.get(queue)
        if state is None or lease_id in self.leases:
            return None
        if not all(index in self.pool.devices for index in devices):
            devices, gpu_mem_mib = (), 0  # its GPUs are not here any more: it still holds its slot
        now = self.clock.time()
        lease = Lease(lease_id, queue, owner, priority, fence, devices, gpu_mem_mib, granted_at, waited_s)
        lease.ttl_s = ttl_s
        lease.expires_at = expires_at
        lease.timer = self.clock.call_later(max(0.0, expires_at - now), self._expire, lease)
        self.leases[lease_id] = state.held[lease_id] = lease
        state.in_use += 1
        state.note_in_use(now)
        if devices:
            self.pool.assign(lease_id, queue, list(devices), gpu_mem_mib)
        self.fence = max(self.fence, fence)
        self._changed()
        return lease

    def _expire(self, lease: Lease) -> None:
        if self.leases.get(lease.id) is lease:
            log.info("lease expired queue=%s owner=%s lease=%s", lease.queue, lease.owner, lease.id)
            self._drop_lease(lease, "expired")

    def renew(self, lease_id: str, ttl_s: float | None = None) -> Lease:
        """Extend a lease's TTL; a lease that is gone says why."""
        lease = self.leases.get(lease_id)
        if lease is None:
            raise LeaseGone(lease_id, self.ended_reason(lease_id) or "unknown lease")
        ttl = ttl_s if ttl_s is not None else lease.ttl_s
        if ttl is not None:
            if lease.timer is not None:
                lease.timer.cancel()
            lease.ttl_s = ttl
            lease.expires_at = self.clock.time() + ttl
            lease.timer = self.clock.call_later(ttl, self._expire, lease)
        return lease

    def ended_reason(self, lease_id: str) -> str | None:
        ended = self._ended_entry(lease_id)
        return ended[1] if ended else None

    def _ended_entry(self, lease_id: str) -> tuple[str, str] | None:
        return self._ended.get(lease_id) or self._ended_old.get(lease_id)

    def revoke(self, lease_id: str) -> bool:
        """Operator force-release: the slot comes back now; the holder learns at its next renew.

        A job's lease is cancelled instead (see `cancel`): its work is stopped, and its slot and GPUs come back
        once its processes are gone, never to the next job while they still run on the card.
        """
        lease = self.leases.get(lease_id)
        if lease is None:
            return False
        if lease.job_id is not None and lease.on_cancel is not None:
            return self.cancel(lease_id)
        self._drop_lease(lease, "revoked")
        return True

    def cancel(self, item_id: str) -> bool:
        """Cancel a waiter (its acquire raises SlotCancelled) or a holder.

        A holder with an `on_cancel` hook (a local task, a job's process) is told
        to stop and its slot comes back when it has; one without (a remote
        lease) is revoked at once.
        """
        waiter = self.waiters.get(item_id)
        if waiter is not None:
            self.queues[waiter.queue].cancelled += 1
            self._end_waiter(waiter, SlotCancelled(waiter.queue))
            self._emit("cancelled", {"waiter": waiter.id, "queue": waiter.queue, "owner": waiter.owner})
            return True
        lease = self.leases.get(item_id)
        if lease is None:
            return False
        if not lease.cancel_requested:
            lease.cancel_requested = True
            state = self.queues.get(lease.queue)
            if state is not None:
                state.cancelled += 1
        self._emit("cancelled", {"lease": lease.id, "queue": lease.queue, "owner": lease.owner})
        if lease.on_cancel is None:
            self._drop_lease(lease, "revoked")
        else:
            lease.on_cancel()
        return True

    def withdraw(self, waiter_id: str) -> bool:
        """Take a waiter out of line without counting it as cancelled; its future is cancelled.

        For a durable job handing its place back to its store (it stays queued
        there and will be offered again), not for an operator's cancel.
        """
        waiter = self.waiters.get(waiter_id)
        if waiter is None:
            return False
        self._end_waiter(waiter, None)
        waiter.future.cancel()
        return True

    # ---------------------------------------------------------------- devices

    def update_devices(self, infos: list[DeviceInfo]) -> None:
        """Fresh figures from the GPU probe (see `DevicePool.update`); waiters that fit now are admitted."""
        self.pool.update(infos, self.clock.time())
        if self._gpu_waiting:
            self._pump()

    def devices_unreadable(self, reason: str) -> None:
        """The GPU probe read nothing this time: probed devices go stale, then take no memory-bound work."""
        self.pool.read_failed(reason, self.clock.time())

    def set_lease_processes(self, lease_id: str, pids: frozenset[int] | None) -> None:
        """The processes of a lease's work (a job's tree; None: unknown), so their GPU memory is theirs, not foreign."""
        if lease_id in self.leases:
            self.pool.set_lease_pids(lease_id, pids)
            if self._gpu_waiting:
                self._pump()

    # ------------------------------------------------------------- observing

    def queue_stats(self, state: QueueState, now: float) -> QueueStats:
        """One queue's figures (from its own leases: it costs the same among 10 queues or 10,000)."""
        config = state.config
        leases = state.held.values()
        owners = {lease.owner for lease in leases}
        if state.waiting:
            owners.update(w.owner for w in state.live_waiters())
        owners.discard(None)
        stuck = 0
        if config.stuck_after_s is not None:
            oldest = now - config.stuck_after_s
            for lease in leases:
                if lease.granted_at < oldest:
                    stuck += 1
        wait_p50, wait_p95, hold_p50, hold_p95 = state.sample_percentiles()
        return trusted(  # every value below is the engine's own, of its field's type: validating would only cost
            QueueStats,
            {
                "config": config,
                "in_use": state.in_use,
                "waiting": state.waiting + state.backlog,
                "owners": len(owners),
                "marks": state.marks,  # shared until a mark moves (see QueueState.marks)
                "totals": state.totals(),
                "wait_p50_s": wait_p50,
                "wait_p95_s": wait_p95,
                "hold_p50_s": hold_p50,
                "hold_p95_s": hold_p95,
                "est_wait_s": state.est_wait_s(mean_hold=state.hold_sorted.mean(state.hold_samples)),
                "stuck": stuck,
            },
        )

    def all_queue_stats(self, now: float) -> list[QueueStats]:
        """Every queue's figures."""
        return [self.queue_stats(state, now) for state in self.queues.values()]

    def lease_infos(self, now: float) -> list[LeaseInfo]:
        return [
            lease.info(now, self.queues[lease.queue].config.stuck_after_s if lease.queue in self.queues else None)
            for lease in self.leases.values()
        ]

    def waiter_infos(self) -> list[WaiterInfo]:
        infos: list[WaiterInfo] = []
        for state in self.queues.values():
            infos.extend(w.info(position) for position, w in enumerate(state.live_waiters(), start=1))
        return infos

    def totals(self, name: str) -> Totals:
        return self.queue(name).totals()

    # --------------------------------------------------------------- plumbing

    def _changed(self) -> None:
        self.version += 1

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(event, fields)
