"""Leases over HTTP: acquire by bounded long-poll, renew by heartbeat, release, revoke, cancel a waiter.

A waiter that is not polled again within its TTL is dropped, and a lease that
is not renewed within its TTL expires, so a client that dies loses its place
and its slot without anyone's help.
"""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from ..engine import Lease
from ..engine.queues import Waiter
from ..errors import LeaseGone, UnknownWaiter
from ..model import AcquireRequest, AcquireResponse, LeaseInfo, Role, WaiterInfo
from .auth import Principal
from .deps import ItemId, Need, QueueName
from .lean import lean
from .problems import ApiProblem, problems
from .state import ApiState


class RenewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_s: float | None = Field(default=None, ge=1, le=3600, description="New TTL (default: the lease's own).")


def unknown_lease(lease_id: str) -> ApiProblem:
    return ApiProblem(404, "Unknown lease", f"no lease {lease_id!r} is known to this server", code="unknown_lease")


def add_lease_routes(r: APIRouter, st: ApiState, need: Need) -> None:
    svc = st.service
    engine = svc.engine
    Client = Annotated[Principal, Depends(need(Role.client))]
    Operator = Annotated[Principal, Depends(need(Role.operator))]
    pending: dict[str, Waiter] = {}  # remote waiters until their outcome is told to a poll

    def lease_info(lease: Lease) -> LeaseInfo:
        state = engine.queues.get(lease.queue)
        return lease.info(svc.clock.time(), state.config.stuck_after_s if state else None)

    def waiter_info(waiter: Waiter) -> WaiterInfo:
        for info in engine.waiter_infos():
            if info.id == waiter.id:
                return info
        return WaiterInfo(id=waiter.id, queue=waiter.queue, owner=waiter.owner, enqueued_at=waiter.enqueued_at)

    def check_holder(item_id: str, who: Principal) -> None:
        if not who.allows(Role.operator) and not st.owns(item_id, who):
            raise ApiProblem(403, "Not yours", f"{item_id} was made by another token", code="forbidden")

    def granted(lease: Lease) -> Response:
        # serialized here, not re-validated by FastAPI: this is the hot path of every remote acquire
        body = AcquireResponse(status="granted", lease=lease_info(lease)).model_dump_json()
        return Response(body, status_code=201, media_type="application/json")

    async def outcome(waiter: Waiter, wait_s: float) -> Lease | None:
        """The waiter's lease, its error raised, or None when `wait_s` passed first."""
        future = waiter.future
        if not future.done():
            stop = asyncio.ensure_future(st.stopping.wait())
            try:
                await asyncio.wait((future, stop), timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
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
    async def acquire(queue: QueueName, body: AcquireRequest, who: Client) -> Response:
        """Ask for a slot. Granted -> 201 with the lease (renew it within `ttl_s`); not yet -> 202 with a
        waiter to poll again; timeout or full queue -> 503 with Retry-After."""
        wait_s = min(body.wait_s, st.settings.max_poll_s)
        if body.waiter_id is not None:
            waiter = pending.get(body.waiter_id)
            if waiter is None or waiter.queue != queue or not (st.owns(waiter.id, who) or who.allows(Role.operator)):
                raise UnknownWaiter(body.waiter_id)
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
            if isinstance(result, Lease):
                st.remember(result.id, who)
                return granted(result)
            waiter = result
            st.remember(waiter.id, who)
            pending[waiter.id] = waiter
            if len(pending) > 2 * len(engine.waiters) + 1024:
                for stale in [k for k, w in pending.items() if w.future.done() and k != waiter.id]:
                    pending.pop(stale, None)
        if not waiter.future.done():
            engine.expire_unpolled(waiter.id, wait_s + body.ttl_s)  # a client that vanishes mid-poll is dropped
        lease = await outcome(waiter, wait_s)
        if lease is not None:
            st.remember(lease.id, who)
            return granted(lease)
        engine.expire_unpolled(waiter.id, body.ttl_s)
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
        """Take a waiter out of line (its acquire answers 409). Clients may cancel their own waiters only."""
        waiter = engine.waiters.get(waiter_id)
        if waiter is None:
            raise UnknownWaiter(waiter_id)
        check_holder(waiter_id, who)
        info = waiter_info(waiter)
        engine.cancel(waiter_id)
        if not st.owns(waiter_id, who):
            await st.audit(who, "waiter.cancel", waiter_id, info.model_dump(mode="json"), None)
        return info
