"""Remote holders and waiters of one `SlotService`: who made what, client-named requests, claim TTL,
pick-up, withdrawal and drain. The HTTP routes (`api.routes_leases`) only parse and answer.

A waiter leaves the line as soon as its caller does: a long-poll whose client
disconnects withdraws it, and one that is not polled again within
`min(ttl_s, POLL_GRACE_S)` of its last answer is dropped. A grant made while
nobody is polling starts with a claim TTL of `min(ttl_s, CLAIM_TTL_S)`, so the
slot of a waiter that died comes back in seconds; the answer to the poll that
picks it up (`answer`) extends it to the full TTL, counted from then.

A client may name its request (`request_id`): a retry with the same name (a
lost answer) resumes the same waiter or returns the same unclaimed lease, and a
withdrawal by that name works before the first answer arrived.

Callers are named by token name (`who`); `operator` says the caller may act on
anything. Errors: `NotYours` (403), `UnknownLease`/`UnknownWaiter` (404),
`LeaseGone` (410), `SlotCancelled` (409), `ServerUnavailable` while draining,
`StoreFault` when a grant cannot be stored (the slot is given back at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .engine import Lease
from .engine.queues import Waiter
from .errors import LeaseGone, NotYours, ServerUnavailable, SlotCancelled, StoreFault, UnknownLease, UnknownWaiter
from .model import AcquireRequest, LeaseInfo, WaiterInfo

if TYPE_CHECKING:
    from .service import SlotService

log = logging.getLogger("slotdeck.api")

POLL_GRACE_S = 5.0  # a waiter not polled again this long after an answer is dropped (capped by its ttl_s)
CLAIM_TTL_S = 5.0  # a grant nobody is polling for expires this soon unless picked up (capped by its ttl_s)
POSITION_SCAN_MAX = 100  # a poll answer computes the exact position only in lines this short (else 0: not computed)
REQUEST_IDS_KEPT = 50_000  # client-named requests remembered for retries and early cancels


async def poll_wait(
    outcome: asyncio.Future[Any], stopping: asyncio.Event, client_left: Callable[[], Awaitable[object]], wait_s: float
) -> bool:
    """Wait up to `wait_s` seconds for a long-poll's `outcome`, a drain (`stopping`) or its client hanging up
    (`client_left` returns); True when the client left."""
    stop = asyncio.ensure_future(stopping.wait())
    left = asyncio.ensure_future(client_left())
    try:
        await asyncio.wait((outcome, stop, left), timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        left.cancel()
    return left.done() and not left.cancelled() and left.exception() is None


class RemoteDesk:
    """The remote side of a service's leases and waiters (one per `SlotService`, on its loop)."""

    def __init__(self, service: SlotService) -> None:
        self.service = service
        self.engine = service.engine
        self.holders: dict[str, str] = {}  # remote lease or waiter id -> token name that made it
        self.pending: dict[str, Waiter] = {}  # remote waiters until their outcome is told to a poll
        self.short: set[str] = set()  # leases granted while nobody polled: on a claim TTL until picked up
        # (token name, client request id) -> the waiter or lease it made; "" when its cancel came first
        self.requests: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.draining = False
        self.hurry = False  # a second signal: stop waiting for running work
        self.stopping = asyncio.Event()

    # ------------------------------------------------------------ ownership

    def remember(self, item_id: str, who: str) -> None:
        self.holders[item_id] = who
        engine = self.engine
        if len(self.holders) > 4 * (len(engine.leases) + len(engine.waiters)) + 1024:
            self.holders = {k: v for k, v in self.holders.items() if k in engine.leases or k in engine.waiters}

    def owns(self, item_id: str, who: str) -> bool:
        """Whether token `who` made this lease/waiter (a remote lease taken back after a restart included)."""
        holder = self.holders.get(item_id)
        if holder is None:
            holder = self.service.keeper.holders.get(item_id)
        return holder == who

    def check_holder(self, item_id: str, who: str, operator: bool) -> None:
        """NotYours unless `who` made `item_id` or is an operator."""
        if not operator and not self.owns(item_id, who):
            raise NotYours(item_id)

    def check_admitting(self) -> None:
        """ServerUnavailable (503 `shutting_down`, Retry-After 5) once draining."""
        if self.draining:
            raise ServerUnavailable("this server is draining for a restart and admits no new work; retry shortly", 5)

    def _name_request(self, who: str, request_id: str, item_id: str) -> None:
        key = (who, request_id)
        self.requests[key] = item_id
        self.requests.move_to_end(key)
        while len(self.requests) > REQUEST_IDS_KEPT:
            self.requests.popitem(last=False)

    # ---------------------------------------------------------------- views

    def lease_info(self, lease: Lease) -> LeaseInfo:
        state = self.engine.queues.get(lease.queue)
        return lease.info(self.service.clock.time(), state.config.stuck_after_s if state else None)

    def waiter_info(self, waiter: Waiter) -> WaiterInfo:
        """O(1) in the length of the line: the exact position only where the line is short (else 0)."""
        position = 0
        state = self.engine.queues.get(waiter.queue)
        if state is not None and state.waiting <= POSITION_SCAN_MAX:
            position = next((n for n, w in enumerate(state.live_waiters(), start=1) if w is waiter), 0)
        return waiter.info(position)

    # -------------------------------------------------------------- acquire

    async def acquire(
        self,
        queue: str,
        body: AcquireRequest,
        who: str,
        operator: bool,
        wait_s: float,
        client_left: Callable[[], Awaitable[object]],
    ) -> Lease | Waiter:
        """One long-poll of a remote acquire: the lease, answered to `who` (stored, TTL from now), or the
        waiter still in line after `wait_s` seconds (poll again within its grace). `client_left` returns
        when the caller hung up: its waiter leaves the line (a grant made meanwhile is given back)."""
        grace_s = min(body.ttl_s, POLL_GRACE_S)
        waiter_id = body.waiter_id
        request_id = body.request_id
        if waiter_id is None and request_id is not None:
            known = self.requests.get((who, request_id))
            if known == "":
                raise SlotCancelled(queue, "cancelled by its client")
            if known is not None:
                lease = self.engine.leases.get(known)
                if lease is not None:  # its answer was lost: the same lease again, its TTL counted from now
                    return await self.answer(lease, who, body.ttl_s, request_id)
                if known not in self.pending:
                    reason = self.engine.ended_reason(known) or "gone"
                    raise SlotCancelled(queue, f"request {request_id} ended: {reason}")
                waiter_id = known
        if waiter_id is not None:
            waiter = self.pending.get(waiter_id)
            if waiter is None or waiter.queue != queue or not (self.owns(waiter.id, who) or operator):
                raise UnknownWaiter(waiter_id)
        else:
            self.check_admitting()
            result = self.engine.enqueue(
                queue,
                owner=body.owner or who,
                priority=body.priority,
                timeout_s=body.timeout_s,
                gpus=body.gpus,
                gpu_mem_mib=body.gpu_mem_mib,
                ttl_s=body.ttl_s,
            )
            if isinstance(result, Lease):
                return await self.answer(result, who, None, request_id)
            waiter = result
            if request_id is not None:
                self._name_request(who, request_id, waiter.id)
            self.remember(waiter.id, who)
            self.pending[waiter.id] = waiter
            self._claim_soon(waiter, body.ttl_s)
            if len(self.pending) > 2 * len(self.engine.waiters) + 1024:
                for stale in [k for k, w in self.pending.items() if w.future.done() and k != waiter.id]:
                    self.pending.pop(stale, None)
        if not waiter.future.done():
            self.engine.expire_unpolled(waiter.id, wait_s + grace_s)  # a client that vanishes mid-poll is dropped
        lease = await self._outcome(waiter, wait_s, client_left)
        if lease is not None:
            return await self.answer(lease, who, body.ttl_s, request_id)
        self.engine.expire_unpolled(waiter.id, grace_s)
        return waiter

    async def answer(self, lease: Lease, who: str, ttl_s: float | None, request_id: str | None) -> Lease:
        """Answer `lease` to a poll of `who`: off its claim TTL and renewed to `ttl_s` counted from now (None:
        granted just now, nothing to renew), remembered as `who`'s, and stored before the holder hears of it
        so that a restart still counts it. The holder counts its deadline from when it sent this request,
        and that poll may come well after the grant (a poll whose answer was lost, asked again).

        SlotCancelled when the grant was not picked up within its claim TTL; StoreFault when it cannot be
        stored: the slot comes back now (the holder hears 503 and holds nothing) and a retry with the same
        `request_id` asks afresh."""
        self.short.discard(lease.id)
        if ttl_s is not None:
            if lease.id not in self.engine.leases:
                raise SlotCancelled(lease.queue, "the grant was not picked up within its claim TTL")
            lease = self.engine.renew(lease.id, ttl_s)
        self.remember(lease.id, who)
        if request_id is not None:
            self._name_request(who, request_id, lease.id)
        keeper = self.service.keeper
        keeper.granted(lease, who)
        try:
            await keeper.sync((lease.queue,))
        except StoreFault:
            for key in [key for key, item_id in self.requests.items() if item_id == lease.id]:
                del self.requests[key]
            self.engine.release(lease.id)
            raise
        return lease

    def _claim_soon(self, waiter: Waiter, ttl_s: float) -> None:
        """A grant made while no poll is there to pick it up gets a short TTL until one does."""

        def on_done(future: asyncio.Future[Lease]) -> None:
            if future.cancelled() or future.exception() is not None or waiter.id not in self.pending:
                return
            lease = future.result()
            maker = self.holders.get(waiter.id)
            if maker is not None:  # the grant is the waiter's maker's before any poll picks it up (visibility)
                self.holders[lease.id] = maker
            if lease.id in self.engine.leases and ttl_s > CLAIM_TTL_S:
                self.short.add(lease.id)
                self.engine.renew(lease.id, CLAIM_TTL_S)

        waiter.future.add_done_callback(on_done)

    async def _outcome(self, waiter: Waiter, wait_s: float, client_left: Callable[[], Awaitable[object]]) -> Lease | None:
        """The waiter's lease, its error raised, or None when `wait_s` passed first (or its client left)."""
        future = waiter.future
        if not future.done() and wait_s > 0 and await poll_wait(future, self.stopping, client_left, wait_s):
            self.pending.pop(waiter.id, None)  # its client is gone
            if not future.done():
                self.engine.abandon(waiter.id, "its client disconnected")  # out of line now, not at its grace
            elif not future.cancelled() and future.exception() is None:
                self.short.discard(future.result().id)
                self.engine.release(future.result().id)  # granted as it left: nobody will hear of it
            return None
        if self.draining and (not future.done() or future.exception() is not None):
            self.pending.pop(waiter.id, None)
            self.engine.cancel(waiter.id)  # no-op when the drain already took it out of line
            self.check_admitting()  # raises: tell the client plainly that the server is going away
        if not future.done():
            return None
        self.pending.pop(waiter.id, None)
        return future.result()  # raises SlotTimeout / SlotCancelled as the engine decided

    # ------------------------------------------------- renew, release, revoke

    def renew(self, lease_id: str, who: str, operator: bool, ttl_s: float | None) -> LeaseInfo:
        """Heartbeat: LeaseGone once it expired, was revoked or released."""
        if lease_id in self.engine.leases:
            self.check_holder(lease_id, who, operator)
        return self.lease_info(self.engine.renew(lease_id, ttl_s))

    def release(self, lease_id: str, who: str, operator: bool) -> None:
        """Give the slot back; a lease that already ended is released already. UnknownLease for one never known."""
        if lease_id not in self.engine.leases:
            if self.engine.ended_reason(lease_id) is None:
                raise UnknownLease(lease_id)
            return
        self.check_holder(lease_id, who, operator)
        self.engine.release(lease_id)

    def revoke(self, lease_id: str) -> LeaseInfo:
        """Operator force-release; the lease as it was. UnknownLease, or LeaseGone for one that ended."""
        lease = self.engine.leases.get(lease_id)
        if lease is None:
            reason = self.engine.ended_reason(lease_id)
            if reason is None:
                raise UnknownLease(lease_id)
            raise LeaseGone(lease_id, reason)
        info = self.lease_info(lease)
        self.engine.revoke(lease_id)
        return info

    # ----------------------------------------------------------- withdrawal

    def cancel_waiter(self, waiter_id: str, who: str, operator: bool) -> tuple[WaiterInfo, bool]:
        """Take a waiter out of line; `waiter_id` may also be a `request_id` `who` named (see `withdraw`).
        Returns the waiter and whether it was another token's (an operator's act, to audit)."""
        waiter = self.engine.waiters.get(waiter_id)
        if waiter is None:
            return self.withdraw(waiter_id, who), False
        self.check_holder(waiter_id, who, operator)
        info = self.waiter_info(waiter)
        self.engine.cancel(waiter_id)
        return info, not self.owns(waiter_id, who)

    def withdraw(self, request_id: str, who: str) -> WaiterInfo:
        """Withdraw the request `who` named `request_id`: out of line if waiting, a grant nobody received is
        released, and a withdrawal that arrives before its request keeps it from ever waiting (UnknownWaiter)."""
        known = self.requests.get((who, request_id))
        if known is None:
            self._name_request(who, request_id, "")  # the cancel overtook its request: refuse it when it comes
            raise UnknownWaiter(request_id)
        waiter = self.pending.pop(known, None) or self.engine.waiters.get(known)
        if waiter is not None and not waiter.future.done():
            info = self.waiter_info(waiter)
            self.engine.abandon(waiter.id, "withdrawn by its client")
            return info
        lease_id = known
        if waiter is not None and not waiter.future.cancelled() and waiter.future.exception() is None:
            lease_id = waiter.future.result().id
        lease = self.engine.leases.get(lease_id)
        if lease is None:
            raise UnknownWaiter(request_id)
        self.short.discard(lease.id)
        self.engine.release(lease.id)  # granted, but its caller had given up before hearing of it
        return WaiterInfo(id=request_id, queue=lease.queue, owner=lease.owner, enqueued_at=lease.granted_at)

    # ---------------------------------------------------------------- drain

    def stop_admitting(self) -> bool:
        """Begin a drain: no new admissions, long-polls end, no queued job starts, remote waiters leave the
        line. False when a drain had begun already."""
        if self.draining:
            return False
        self.draining = True
        self.stopping.set()
        self.service.jobs.hold_queued()  # from now on no queued job starts; running ones get the grace period
        for waiter_id in [w for w in self.holders if w in self.engine.waiters]:
            self.engine.cancel(waiter_id)
        return True

    async def wind_down(self, grace_s: float) -> None:
        """Give the leases running now `grace_s` seconds (less once `hurry` is set) to end, then revoke what
        remains (each logged) but the stored remote leases: those the next start takes back and counts."""
        engine = self.engine
        deadline = time.monotonic() + grace_s
        running = set(engine.leases)  # the work running now gets the grace period, nothing admitted later
        if running:
            log.info("draining: waiting up to %.0fs for %d running lease(s)", grace_s, len(running))
        while running & engine.leases.keys() and time.monotonic() < deadline and not self.hurry:
            await asyncio.sleep(0.05)
        restored = self.service.keeper.holders  # remote leases taken back after a restart are remote too
        kept = 0
        for lease_id in [lease_id for lease_id in engine.leases if lease_id in self.holders or lease_id in restored]:
            lease = engine.leases[lease_id]
            if lease.ttl_s is not None and lease.expires_at is not None:
                # stored: its holder hears nothing until its next renew and may still be working, so the next
                # start takes it back and counts it (as after kill -9); revoking it would free the slot too early
                log.warning("kept for the next start queue=%s owner=%s lease=%s", lease.queue, lease.owner, lease.id)
                kept += 1
                continue
            log.warning("revoked at shutdown queue=%s owner=%s lease=%s", lease.queue, lease.owner, lease.id)
            engine.revoke(lease_id)
        if len(engine.leases) > kept:
            log.warning(
                "shutting down with %d running job lease(s): they are stopped and queued again for the next start",
                len(engine.leases) - kept,
            )
