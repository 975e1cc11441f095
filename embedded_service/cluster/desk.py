"""Remote holders and waiters (the HTTP API's) of a service in redis mode: `RemoteDesk`'s rules on the cluster.

A remote lease lives in Redis with the TTL its client renews, so any instance on the same Redis and namespace
renews, releases or revokes it (acquire on one server, release on another); who made it (the token name) is
kept beside it in Redis (``<prefix>:rt:<lease id>``, expiring with the lease). A waiter is the long-poll of one
instance: its client polls that instance again (`waiter_id`), or withdraws it there; an operator cancels any
waiter of the deployment by the id the snapshot shows. A grant made while nobody polls is held on a claim TTL
of `min(ttl_s, CLAIM_TTL_S)`, and a waiter not polled again within `min(ttl_s, POLL_GRACE_S)` leaves the line.

Errors as `RemoteDesk`'s: `NotYours` (403), `UnknownWaiter` (404), `LeaseGone` (410), `SlotCancelled` (409),
`ServerUnavailable` while draining; a release of a lease nobody holds (any more) is a no-op.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..engine import Lease
from ..errors import LeaseGone, LeaseLost, NotYours, ServerUnavailable, SlotCancelled, UnknownWaiter
from ..model import AcquireRequest, LeaseInfo, WaiterInfo
from ..remote import CLAIM_TTL_S, POLL_GRACE_S, REQUEST_IDS_KEPT, poll_wait
from .slots import ClusterLease

if TYPE_CHECKING:
    from ..jobs import JobRunner
    from .admission import ClusterAdmission

FIRST_ANSWER_S = 10.0  # a new request waits this long at most for Redis to grant, refuse or queue it


@dataclass(eq=False)
class RemoteWaiter:
    """One remote acquire waiting on this instance (its `task` runs `ClusterSlots.acquire`)."""

    id: str
    queue: str
    owner: str
    priority: int
    who: str
    enqueued_at: float
    task: asyncio.Task[ClusterLease]
    grace: asyncio.TimerHandle | None = None
    request_id: str | None = None
    gpus: int = 0
    gpu_mem_mib: int = 0

    def info(self) -> WaiterInfo:
        return WaiterInfo(
            id=self.id,
            queue=self.queue,
            owner=self.owner,
            priority=self.priority,
            enqueued_at=self.enqueued_at,
            gpus=self.gpus,
            gpu_mem_mib=self.gpu_mem_mib,
        )


class ClusterDesk:
    """The remote side of a redis-mode service (one per `SlotService`, on its loop)."""

    def __init__(self, admission: ClusterAdmission, jobs: JobRunner | None = None) -> None:
        self.admission = admission
        self.jobs = jobs  # the runner of this instance's job store, if it owns one
        self.slots = admission.slots
        self.holders: dict[str, str] = {}  # ids made through this instance -> token name (visibility of its views)
        self.pending: dict[str, RemoteWaiter] = {}
        self.requests: dict[tuple[str, str], str] = {}  # (token name, request id) -> waiter id on this instance
        self.draining = False
        self.hurry = False
        self.stopping = asyncio.Event()
        self._releases: set[asyncio.Future[None]] = set()

    def _key(self, lease_id: str) -> str:
        return f"{self.slots.prefix}:rt:{lease_id}"

    # ------------------------------------------------------------ ownership

    def owns(self, item_id: str, who: str) -> bool:
        return self.holders.get(item_id) == who

    def _remember(self, item_id: str, who: str) -> None:
        self.holders[item_id] = who
        while len(self.holders) > REQUEST_IDS_KEPT:
            del self.holders[next(iter(self.holders))]

    def _name_request(self, who: str, request_id: str, item_id: str) -> None:
        self.requests[(who, request_id)] = item_id
        while len(self.requests) > REQUEST_IDS_KEPT:
            del self.requests[next(iter(self.requests))]

    def check_admitting(self) -> None:
        if self.draining:
            raise ServerUnavailable("this server is draining for a restart and admits no new work; retry shortly", 5)

    def lease_info(self, lease: Lease) -> LeaseInfo:
        return _info(lease, time.time())

    def waiter_info(self, waiter: RemoteWaiter) -> WaiterInfo:
        return waiter.info()

    # -------------------------------------------------------------- acquire

    async def acquire(
        self,
        queue: str,
        body: AcquireRequest,
        who: str,
        operator: bool,
        wait_s: float,
        client_left: Callable[[], Awaitable[object]],
    ) -> Lease | RemoteWaiter:
        """One long-poll (see `RemoteDesk.acquire`): the lease, or the waiter still in line after `wait_s`."""
        grace_s = min(body.ttl_s, POLL_GRACE_S)
        waiter_id = body.waiter_id
        if waiter_id is None and body.request_id is not None:
            waiter_id = self.requests.get((who, body.request_id))
            if waiter_id == "":
                raise SlotCancelled(queue, "cancelled by its client")
        if waiter_id is not None:
            waiter = self.pending.get(waiter_id)
            if waiter is None or waiter.queue != queue or not (waiter.who == who or operator):
                raise UnknownWaiter(waiter_id)
        else:
            self.check_admitting()
            owner = body.owner or who
            queued = asyncio.Event()
            waiter_id = uuid.uuid4().hex  # the same id in line in Redis: its events name the waiter its client knows
            task = asyncio.ensure_future(
                self.admission.acquire(
                    queue,
                    owner=owner,
                    priority=body.priority,
                    timeout_s=body.timeout_s,
                    ttl_s=min(body.ttl_s, CLAIM_TTL_S),
                    on_queued=queued.set,
                    gpus=body.gpus,
                    gpu_mem_mib=body.gpu_mem_mib,
                    maker=who,
                    waiter_id=waiter_id,
                )
            )
            waiter = RemoteWaiter(waiter_id, queue, owner, body.priority, who, time.time(), task)
            waiter.gpus, waiter.gpu_mem_mib = body.gpus or (1 if body.gpu_mem_mib else 0), body.gpu_mem_mib
            # Redis answers first (granted at once, refused, or in line), then the wait of this poll begins
            in_line = asyncio.ensure_future(queued.wait())
            try:
                await asyncio.wait((task, in_line), timeout=FIRST_ANSWER_S, return_when=asyncio.FIRST_COMPLETED)
            finally:
                in_line.cancel()
            waiter.request_id = body.request_id
            if body.request_id is not None:
                self._name_request(who, body.request_id, waiter.id)
            self.pending[waiter.id] = waiter
            self._remember(waiter.id, who)
        if waiter.grace is not None:
            waiter.grace.cancel()
            waiter.grace = None
        task = waiter.task
        if not task.done() and wait_s > 0 and await poll_wait(task, self.stopping, client_left, wait_s):
            self._drop(waiter)  # its client hung up: out of line, a grant made meanwhile given back
            return waiter
        if self.draining and not task.done():
            self._drop(waiter)
            self.check_admitting()
        if not task.done():
            waiter.grace = asyncio.get_running_loop().call_later(grace_s, self._drop, waiter)
            return waiter
        self._forget(waiter)
        lease = task.result()  # raises SlotTimeout / QueueFull / SlotCancelled / UnknownQueue as Redis decided
        waited_s = time.time() - waiter.enqueued_at
        return await self._answer(lease, who, body.ttl_s, body.priority, waited_s, waiter.gpu_mem_mib)

    async def _answer(
        self, lease: ClusterLease, who: str, ttl_s: float, priority: int, waited_s: float, gpu_mem_mib: int = 0
    ) -> Lease:
        """Hand `lease` to its remote holder: off its claim TTL, renewed to `ttl_s` from now, its maker kept."""
        try:
            await self.slots.renew(lease, ttl_s)
        except LeaseLost as exc:
            raise SlotCancelled(lease.queue, "the grant was not picked up within its claim TTL") from exc
        self.slots.detach(lease)  # its client renews and releases it, through any instance
        now = time.time()
        record = {"who": who, "q": lease.queue, "o": lease.owner, "f": lease.fence, "p": priority, "g": now, "ttl": ttl_s}
        if lease.devices:  # a GPU lease: its host and devices, shown on every answer about it
            record |= {"h": lease.host, "d": list(lease.devices), "gm": gpu_mem_mib}
        await self.slots.client.set(self._key(lease.lease_id), json.dumps(record), px=int(ttl_s * 2000))
        self._remember(lease.lease_id, who)
        return _lease(lease.lease_id, record, now + ttl_s, waited_s)

    def _forget(self, waiter: RemoteWaiter) -> None:
        self.pending.pop(waiter.id, None)
        if waiter.grace is not None:
            waiter.grace.cancel()
            waiter.grace = None

    def _drop(self, waiter: RemoteWaiter) -> None:
        """Out of line (nobody polls it any more); a grant it got is given back."""
        self._forget(waiter)
        task = waiter.task
        if not task.done():
            task.cancel()  # ClusterSlots.acquire takes it out of line (or gives back a grant in flight)
        elif not task.cancelled() and task.exception() is None:
            release = asyncio.ensure_future(self.slots.release(task.result()))
            self._releases.add(release)
            release.add_done_callback(self._releases.discard)

    # ------------------------------------------------- renew, release, revoke

    async def _record(self, lease_id: str) -> dict[str, Any] | None:
        raw = await self.slots.client.get(self._key(lease_id))
        return json.loads(raw) if raw else None

    async def renew(self, lease_id: str, who: str, operator: bool, ttl_s: float | None) -> LeaseInfo:
        """Heartbeat through any instance; LeaseGone once it expired, was revoked or released."""
        record = await self._record(lease_id)
        if record is None:
            raise LeaseGone(lease_id, "expired, revoked or released")
        if not operator and record["who"] != who:
            raise NotYours(lease_id)
        ttl = ttl_s if ttl_s is not None else float(record["ttl"])
        held = ClusterLease(lease_id, record["q"], record["o"], int(record["f"]), ttl_s=ttl)
        try:
            await self.slots.renew(held, ttl)
        except LeaseLost as exc:
            raise LeaseGone(lease_id, exc.reason) from None
        await self.slots.client.pexpire(self._key(lease_id), int(ttl * 2000))
        return _info(_lease(lease_id, record, time.time() + ttl, 0.0), time.time())

    async def release(self, lease_id: str, who: str, operator: bool) -> None:
        """Give the slot back through any instance; a lease that already ended is released already."""
        record = await self._record(lease_id)
        if record is None:
            return
        if not operator and record["who"] != who:
            raise NotYours(lease_id)
        await self.slots.release(ClusterLease(lease_id, record["q"], record["o"], int(record["f"])))
        await self.slots.client.delete(self._key(lease_id))

    async def revoke(self, lease_id: str) -> LeaseInfo:
        """Operator force-release of any holder in the deployment; the lease as it was. LeaseGone if not held."""
        record = await self._record(lease_id)
        shown = next((lease for lease in self.admission.view.leases if lease.id == lease_id), None)
        if not await self.slots.revoke(lease_id):
            raise LeaseGone(lease_id, "not held (expired, revoked or released)")
        await self.slots.client.delete(self._key(lease_id))
        if record is not None:
            return _info(_lease(lease_id, record, None, 0.0), time.time())
        if shown is not None:
            return shown
        return LeaseInfo(id=lease_id, queue="?", fence=0, granted_at=time.time())

    # ----------------------------------------------------------- withdrawal

    async def cancel_waiter(self, waiter_id: str, who: str, operator: bool) -> tuple[WaiterInfo, bool]:
        """A waiter of this instance (by id or the `request_id` its client named), or, for an operator, any
        waiter of the deployment by its snapshot id. Returns it and whether it was another token's."""
        known = self.requests.get((who, waiter_id), waiter_id)
        waiter = self.pending.get(known)
        if waiter is not None:
            if not operator and waiter.who != who:
                raise NotYours(waiter_id)
            self._drop(waiter)
            ending: list[asyncio.Future[Any]] = [waiter.task, *self._releases]
            await asyncio.wait(ending)  # answered once Redis has it out of line, or its grant back
            return waiter.info(), waiter.who != who
        if (who, waiter_id) not in self.requests and len(waiter_id) <= 64:
            self._name_request(who, waiter_id, "")  # a cancel that overtook its request: refuse it when it comes
        if operator:
            shown = next((w for w in self.admission.view.waiters if w.id == waiter_id), None)
            if await self.slots.cancel(waiter_id):
                return shown or WaiterInfo(id=waiter_id, queue="?", enqueued_at=time.time()), True
        raise UnknownWaiter(waiter_id)

    # ---------------------------------------------------------------- drain

    def stop_admitting(self) -> bool:
        """Begin a drain: no new admissions, long-polls end, this instance's remote waiters leave the line."""
        if self.draining:
            return False
        self.draining = True
        self.stopping.set()
        if self.jobs is not None:
            self.jobs.hold_queued()  # from now on no queued job starts; running ones get the grace period
        for waiter in list(self.pending.values()):
            self._drop(waiter)
        return True

    async def wind_down(self, grace_s: float) -> None:
        """Give the jobs running now `grace_s` seconds (less once `hurry` is set) to end; remote leases need
        nothing: they live in Redis and their clients renew them through any instance."""
        if self.jobs is None:
            return
        local = self.jobs.engine.leases  # one per job of this instance that runs (or waits for its global slot)
        running = set(local)
        deadline = time.monotonic() + grace_s
        while running & local.keys() and time.monotonic() < deadline and not self.hurry:
            await asyncio.sleep(0.05)


@dataclass(eq=False, slots=True)
class HostLease(Lease):
    """A remote lease in redis mode: an engine `Lease` with the host whose GPUs `devices` are."""

    host: str | None = None


def _info(lease: Lease, now: float) -> LeaseInfo:
    info = lease.info(now, None)
    host = lease.host if isinstance(lease, HostLease) else None
    return info.model_copy(update={"host": host}) if host else info


def _lease(lease_id: str, record: dict[str, Any], expires_at: float | None, waited_s: float) -> HostLease:
    return HostLease(
        host=record.get("h"),
        id=lease_id,
        queue=record["q"],
        owner=record["o"] or None,
        priority=int(record["p"]),
        fence=int(record["f"]),
        devices=tuple(record.get("d", ())),
        gpu_mem_mib=int(record.get("gm", 0)),
        granted_at=float(record["g"]),
        waited_s=waited_s,
        ttl_s=float(record["ttl"]),
        expires_at=expires_at,
    )
