"""Leases over HTTP: acquire by bounded long-poll, renew by heartbeat, release, revoke, cancel a waiter.

The rules (who made what, client-named requests, claim TTL, pick-up, withdrawal, drain) live in the
service layer, `embedded_service.remote.RemoteDesk`; these routes parse, call it and answer.
"""

import inspect
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..engine import Lease
from ..model import AcquireRequest, AcquireResponse, LeaseInfo, Role, WaiterInfo
from .auth import Principal
from .deps import ItemId, Need, QueueName
from .lean import lean
from .problems import problems
from .state import ApiState

T = TypeVar("T")


async def answered(value: T | Awaitable[T]) -> T:
    """The in-process desk (`RemoteDesk`) answers at once; the redis-mode desk (`ClusterDesk`) once Redis did."""
    return await value if inspect.isawaitable(value) else value


class RenewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ttl_s: float | None = Field(default=None, ge=1, le=3600, description="New TTL (default: the lease's own).")


def add_lease_routes(r: APIRouter, st: ApiState, need: Need) -> None:
    desk = st.service.remote
    Client = Annotated[Principal, Depends(need(Role.client))]
    Operator = Annotated[Principal, Depends(need(Role.operator))]

    def granted(lease: Lease) -> Response:
        # serialized here, not re-validated by FastAPI: this is the hot path of every remote acquire
        body = AcquireResponse(status="granted", lease=desk.lease_info(lease)).model_dump_json()
        return Response(body, status_code=201, media_type="application/json")

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

        async def client_left() -> None:
            """Returns when the client closed the connection (the body was read already)."""
            while (await request.receive())["type"] != "http.disconnect":
                pass

        wait_s = min(body.wait_s, st.settings.max_poll_s)
        result = await desk.acquire(queue, body, who.name, who.allows(Role.operator), wait_s, client_left)
        if isinstance(result, Lease):
            return granted(result)
        body_json = AcquireResponse(status="waiting", waiter=desk.waiter_info(result)).model_dump_json()  # type: ignore[arg-type]
        return Response(body_json, status_code=202, media_type="application/json")

    @r.post("/v1/leases/{lease_id}/renew", response_model=LeaseInfo, responses=problems(401, 403, 410, 422), tags=["leases"])
    @lean
    async def renew(lease_id: ItemId, who: Client, body: RenewRequest | None = None) -> LeaseInfo:
        """Heartbeat: extend the lease's TTL. 410 once it expired, was revoked or released."""
        return await answered(desk.renew(lease_id, who.name, who.allows(Role.operator), body.ttl_s if body else None))

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
        await answered(desk.release(lease_id, who.name, who.allows(Role.operator)))
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
        info = await answered(desk.revoke(lease_id))
        await st.audit(who, "lease.revoke", lease_id, info.model_dump(mode="json"), None)
        return info

    @r.post(
        "/v1/waiters/{waiter_id}/cancel", response_model=WaiterInfo, responses=problems(401, 403, 404, 422), tags=["leases"]
    )
    async def cancel_waiter(waiter_id: ItemId, who: Client) -> WaiterInfo:
        """Take a waiter out of line (its acquire answers 409). Clients may cancel their own waiters only.
        `waiter_id` may also be a `request_id` the caller named: a grant it made and nobody received is
        released, and a cancel that arrives before its request keeps that request from ever waiting."""
        info, others = await answered(desk.cancel_waiter(waiter_id, who.name, who.allows(Role.operator)))
        if others:
            await st.audit(who, "waiter.cancel", waiter_id, info.model_dump(mode="json"), None)
        return info
