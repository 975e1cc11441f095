"""Leases over HTTP: acquire by bounded long-poll, renew by heartbeat, release, revoke, cancel a waiter.

A waiter leaves the line as soon as its caller does: a long-poll whose client
disconnects withdraws it, and one that is not polled again within
`min(ttl_s, POLL_GRACE_S)` of its last answer is dropped. A grant made while
nobody is polling starts with a claim TTL of `min(ttl_s, CLAIM_TTL_S)`, so the
slot of a waiter that died comes back in seconds; the poll that picks it up
extends it to the full TTL. A lease not renewed within its TTL expires.

A client may name its request (`request_id`): a retry with the same name (a
lost answer) resumes the same waiter or returns the same unclaimed lease, and
`POST /v1/waiters/{request_id}/cancel` works before the first answer arrived.
"""

import asyncio
from collections import OrderedDict
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..engine import Lease
from ..engine.queues import Waiter
from ..errors import LeaseGone, SlotCancelled, StoreFault, UnknownWaiter
from ..model import AcquireRequest, AcquireResponse, LeaseInfo, Role, WaiterInfo
from .auth import Principal
from .deps import ItemId, Need, QueueName
from .lean import lean
from .problems import ApiProblem, problems
from .state import ApiState

POLL_GRACE_S = 5.0  # a waiter not polled again this long after an answer is dropped (capped by its ttl_s)
CLAIM_TTL_S = 5.0  # a grant nobody is polling for expires this soon unless picked up (capped by its ttl_s)
POSITION_SCAN_MAX = 100  # a poll answer computes the exact position only in lines this short (else 0: not computed)
REQUEST_IDS_KEPT = 50_000  # client-named requests remembered for retries and early cancels


class RenewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ttl_s: float | None = Field(default=None, ge=1, le=3600, description="New TTL (default: the lease's own).")


def unknown_lease(lease_id: str) -> ApiProblem:
    return ApiProblem(404, "Unknown lease", f"no lease {lease_id!r} is known to this server", code="unknown_lease")


def add_lease_routes(r: APIRouter, st: ApiState, need: Need) -> None:
    svc = st.service
    engine = svc.engine
    Client = Annotated[Principal, Depends(need(Role.client))]
    Operator = Annotated[Principal, Depends(need(Role.operator))]
    pending: dict[str, Waiter] = {}  # remote waiters until their outcome is told to a poll
    short: set[str] = set()  # leases granted while nobody polled: on a claim TTL until picked up
    # (token name, client request id) -> the waiter or lease it made; "" when its cancel came first
    requests: OrderedDict[tuple[str, str], str] = OrderedDict()

    def lease_info(lease: Lease) -> LeaseInfo:
        state = engine.queues.get(lease.queue)
        return lease.info(svc.clock.time(), state.config.stuck_after_s if state else None)

    def waiter_info(waiter: Waiter) -> WaiterInfo:
        """O(1) in the length of the line: the exact position only where the line is short (else 0)."""
        position = 0
        state = engine.queues.get(waiter.queue)
        if state is not None and state.waiting <= POSITION_SCAN_MAX:
            position = next((n for n, w in enumerate(state.live_waiters(), start=1) if w is waiter), 0)
        return WaiterInfo(
            id=waiter.id,
            queue=waiter.queue,
            owner=waiter.owner,
            priority=waiter.priority,
            gpus=waiter.gpus,
            gpu_mem_mib=waiter.gpu_mem_mib,
            enqueued_at=waiter.enqueued_at,
            deadline=waiter.deadline,
            position=position,
            job_id=waiter.job_id,
        )

    def name_request(who: Principal, request_id: str, item_id: str) -> None:
        key = (who.name, request_id)
        requests[key] = item_id
        requests.move_to_end(key)
        while len(requests) > REQUEST_IDS_KEPT:
            requests.popitem(last=False)

    def check_holder(item_id: str, who: Principal) -> None:
        if not who.allows(Role.operator) and not st.owns(item_id, who):
            raise ApiProblem(403, "Not yours", f"{item_id} was made by another token", code="forbidden")

    async def granted(lease: Lease, who: Principal) -> Response:
        svc.keeper.granted(lease, who.name)
        try:
            await svc.keeper.sync((lease.queue,))  # stored before the holder hears of it: a restart still counts it
        except StoreFault:
            # the holder hears 503, so it holds nothing: give the slot back now instead of at its TTL, and let a
            # retry with the same request_id ask afresh
            for key in [key for key, item_id in requests.items() if item_id == lease.id]:
                del requests[key]
            short.discard(lease.id)
            engine.release(lease.id)
            raise
        # serialized here, not re-validated by FastAPI: this is the hot path of every remote acquire
        body = AcquireResponse(status="granted", lease=lease_info(lease)).model_dump_json()
        return Response(body, status_code=201, media_type="application/json")

    def claim_soon(waiter: Waiter, ttl_s: float) -> None:
        """A grant made while no poll is there to pick it up gets a short TTL until one does."""

        def on_done(future: asyncio.Future[Lease]) -> None:
            if future.cancelled() or future.exception() is not None or waiter.id not in pending:
                return
            lease = future.result()
            maker = st.holders.get(waiter.id)
            if maker is not None:  # the grant is the waiter's maker's before any poll picks it up (visibility)
                st.holders[lease.id] = maker
            if lease.id in engine.leases and ttl_s > CLAIM_TTL_S:
                short.add(lease.id)
                engine.renew(lease.id, CLAIM_TTL_S)

        waiter.future.add_done_callback(on_done)

    def pick_up(lease: Lease, ttl_s: float) -> Lease:
        """The lease answered to a poll, its TTL counted from now: the holder counts its deadline from when it sent
        this request, and that poll may come well after the grant (a poll whose answer was lost, asked again)."""
        short.discard(lease.id)
        if lease.id not in engine.leases:
            raise SlotCancelled(lease.queue, "the grant was not picked up within its claim TTL")
        return engine.renew(lease.id, ttl_s)

    async def client_left(request: Request) -> None:
        """Returns when the client closed the connection (the body was read already)."""
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def outcome(waiter: Waiter, wait_s: float, request: Request) -> Lease | None:
        """The waiter's lease, its error raised, or None when `wait_s` passed first (or its client left)."""
        future = waiter.future
        if not future.done() and wait_s > 0:
            stop = asyncio.ensure_future(st.stopping.wait())
            left = asyncio.ensure_future(client_left(request))
            try:
                await asyncio.wait((future, stop, left), timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                left.cancel()
            if left.done() and not left.cancelled() and left.exception() is None:  # its client is gone
                pending.pop(waiter.id, None)
                if not future.done():
                    engine.abandon(waiter.id, "its client disconnected")  # out of line now, not at its poll grace
                elif not future.cancelled() and future.exception() is None:
                    short.discard(future.result().id)
                    engine.release(future.result().id)  # granted as it left: nobody will hear of it
                return None
        if st.draining and (not future.done() or future.exception() is not None):
            pending.pop(waiter.id, None)
            engine.cancel(waiter.id)  # no-op when the drain already took it out of line
            st.check_admitting()  # raises: tell the client plainly that the server is going away
        if not future.done():
            return None
        pending.pop(waiter.id, None)
        return future.result()  # raises SlotTimeout / SlotCancelled as the engine decided

    @r.post(
        "/v1/queues/{queue}/leases",
        response_model=AcquireResponse,
        status_code=201,
        responses={
            202: {"model": AcquireResponse, "description": "Still waiting: poll again with `waiter_id` within `ttl_s`"},
            **problems(401, 403, 404, 409, 422, 503),
        },
        tags=["leases"],
    )
    @lean
    async def acquire(queue: QueueName, body: AcquireRequest, who: Client, request: Request) -> Response:
        """Ask for a slot. Granted -> 201 with the lease (renew it within `ttl_s`); not yet -> 202 with a
        waiter to poll again within `min(ttl_s, 5)` s; timeout or full queue -> 503 with Retry-After.
        A retry with the same `request_id` resumes the same request."""
        wait_s = min(body.wait_s, st.settings.max_poll_s)
        grace_s = min(body.ttl_s, POLL_GRACE_S)
        waiter_id = body.waiter_id
        request_id = body.request_id
        if waiter_id is None and request_id is not None:
            known = requests.get((who.name, request_id))
            if known == "":
                raise SlotCancelled(queue, "cancelled by its client")
            if known is not None:
                lease = engine.leases.get(known)
                if lease is not None:  # its answer was lost: the same lease again, its TTL counted from now
                    short.discard(lease.id)
                    return await granted(engine.renew(lease.id, body.ttl_s), who)
                if known not in pending:
                    raise SlotCancelled(queue, f"request {request_id} ended: {engine.ended_reason(known) or 'gone'}")
                waiter_id = known
        if waiter_id is not None:
            waiter = pending.get(waiter_id)
            if waiter is None or waiter.queue != queue or not (st.owns(waiter.id, who) or who.allows(Role.operator)):
                raise UnknownWaiter(waiter_id)
        else:
            st.check_admitting()
            result = engine.enqueue(
                queue,
                owner=body.owner or who.name,
                priority=body.priority,
                timeout_s=body.timeout_s,
                gpus=body.gpus,
                gpu_mem_mib=body.gpu_mem_mib,
                ttl_s=body.ttl_s,
            )
            if request_id is not None:
                name_request(who, request_id, result.id)
            if isinstance(result, Lease):
                st.remember(result.id, who)
                return await granted(result, who)
            waiter = result
            st.remember(waiter.id, who)
            pending[waiter.id] = waiter
            claim_soon(waiter, body.ttl_s)
            if len(pending) > 2 * len(engine.waiters) + 1024:
                for stale in [k for k, w in pending.items() if w.future.done() and k != waiter.id]:
                    pending.pop(stale, None)
        if not waiter.future.done():
            engine.expire_unpolled(waiter.id, wait_s + grace_s)  # a client that vanishes mid-poll is dropped
        lease = await outcome(waiter, wait_s, request)
        if lease is not None:
            lease = pick_up(lease, body.ttl_s)
            st.remember(lease.id, who)
            if request_id is not None:
                name_request(who, request_id, lease.id)
            return await granted(lease, who)
        engine.expire_unpolled(waiter.id, grace_s)
        body_json = AcquireResponse(status="waiting", waiter=waiter_info(waiter)).model_dump_json()
        return Response(body_json, status_code=202, media_type="application/json")

    @r.post("/v1/leases/{lease_id}/renew", response_model=LeaseInfo, responses=problems(401, 403, 410, 422), tags=["leases"])
    @lean
    async def renew(lease_id: ItemId, who: Client, body: RenewRequest | None = None) -> LeaseInfo:
        """Heartbeat: extend the lease's TTL. 410 once it expired, was revoked or released."""
        if lease_id in engine.leases:
            check_holder(lease_id, who)
        return lease_info(engine.renew(lease_id, body.ttl_s if body else None))

    @r.delete(
        "/v1/leases/{lease_id}",
        status_code=204,
        response_class=Response,
        responses=problems(401, 403, 404, 422),
        tags=["leases"],
    )
    @lean
    async def release(lease_id: ItemId, who: Client) -> Response:
        """Give the slot back. Idempotent: releasing a lease that already ended answers 204 too."""
        lease = engine.leases.get(lease_id)
        if lease is None:
            if engine.ended_reason(lease_id) is None:
                raise unknown_lease(lease_id)
            return Response(status_code=204)
        check_holder(lease_id, who)
        engine.release(lease_id)
        return Response(status_code=204)

    @r.post(
        "/v1/leases/{lease_id}/revoke",
        response_model=LeaseInfo,
        responses=problems(401, 403, 404, 410, 422),
        tags=["leases"],
    )
    async def revoke(lease_id: ItemId, who: Operator) -> LeaseInfo:
        """Operator force-release: the slot comes back now; the holder learns at its next heartbeat (410).
        A job's lease: the job is stopped as by a cancel, its slot comes back once its processes are gone."""
        lease = engine.leases.get(lease_id)
        if lease is None:
            reason = engine.ended_reason(lease_id)
            if reason is None:
                raise unknown_lease(lease_id)
            raise LeaseGone(lease_id, reason)
        info = lease_info(lease)
        engine.revoke(lease_id)
        await st.audit(who, "lease.revoke", lease_id, info.model_dump(mode="json"), None)
        return info

    @r.post(
        "/v1/waiters/{waiter_id}/cancel", response_model=WaiterInfo, responses=problems(401, 403, 404, 422), tags=["leases"]
    )
    async def cancel_waiter(waiter_id: ItemId, who: Client) -> WaiterInfo:
        """Take a waiter out of line (its acquire answers 409). Clients may cancel their own waiters only.
        `waiter_id` may also be a `request_id` the caller named: a grant it made and nobody received is
        released, and a cancel that arrives before its request keeps that request from ever waiting."""
        waiter = engine.waiters.get(waiter_id)
        if waiter is None:
            return withdraw_request(waiter_id, who)
        check_holder(waiter_id, who)
        info = waiter_info(waiter)
        engine.cancel(waiter_id)
        if not st.owns(waiter_id, who):
            await st.audit(who, "waiter.cancel", waiter_id, info.model_dump(mode="json"), None)
        return info

    def withdraw_request(request_id: str, who: Principal) -> WaiterInfo:
        key = (who.name, request_id)
        known = requests.get(key)
        if known is None:
            name_request(who, request_id, "")  # the cancel overtook its request: refuse that request when it comes
            raise UnknownWaiter(request_id)
        waiter = pending.pop(known, None) or engine.waiters.get(known)
        if waiter is not None and not waiter.future.done():
            info = waiter_info(waiter)
            engine.abandon(waiter.id, "withdrawn by its client")
            return info
        lease_id = known
        if waiter is not None and not waiter.future.cancelled() and waiter.future.exception() is None:
            lease_id = waiter.future.result().id
        lease = engine.leases.get(lease_id)
        if lease is None:
            raise UnknownWaiter(request_id)
        short.discard(lease.id)
        engine.release(lease.id)  # granted, but its caller had given up before hearing of it
        return WaiterInfo(id=request_id, queue=lease.queue, owner=lease.owner, enqueued_at=lease.granted_at)
