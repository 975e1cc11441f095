"""Queue configuration and operator controls; every change is audited with before -> after."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from ..model import QueueConfig, QueuePatch, QueueStats, QueueStatsView, QueueView, ResetFields, Role
from .auth import Principal
from .deps import Need, QueueName
from .problems import ApiProblem, problems
from .state import ApiState


def add_queue_routes(r: APIRouter, st: ApiState, need: Need) -> None:
    svc = st.service
    Viewer = Annotated[Principal, Depends(need(Role.viewer))]
    Operator = Annotated[Principal, Depends(need(Role.operator))]

    def current(name: str) -> dict[str, Any] | None:
        return svc.queue_config(name).model_dump(mode="json") if svc.has_queue(name) else None

    def view(config: QueueConfig) -> QueueView:
        configured, overrides = svc.overrides.view(config.name)
        return QueueView(**config.model_dump(), overrides=overrides, configured=configured)

    @r.get("/v1/queues", response_model=list[QueueView], responses=problems(401, 403), tags=["queues"])
    async def list_queues(_: Viewer) -> list[QueueView]:
        """Every queue's configuration, with `configured` (code/config values) and `overrides` (fields an
        operator set live: value, by, at)."""
        await svc.refresh()
        return [view(config) for config in svc.queue_configs()]

    @r.get("/v1/queues/{queue}", response_model=QueueStatsView, responses=problems(401, 403, 404, 422), tags=["queues"])
    async def get_queue(queue: QueueName, _: Viewer) -> QueueStatsView:
        """One queue's live state, with `configured` and `overrides` as in the list."""
        await svc.refresh()
        stats = svc.queue_stats(queue)
        await svc.keeper.sync_shown((queue,))  # the totals shown are stored: they never go backwards after a crash
        configured, overrides = svc.overrides.view(queue)
        return QueueStatsView(**dict(stats), overrides=overrides, configured=configured)

    @r.put("/v1/queues/{queue}", response_model=QueueConfig, responses=problems(401, 403, 422), tags=["queues"])
    async def put_queue(queue: QueueName, body: QueuePatch, who: Operator) -> QueueConfig:
        """Create a queue or replace its whole configuration (fields left out take their defaults)."""
        before = current(queue)
        config = await svc.replace_queue(queue, who.name, **body.model_dump(exclude_unset=True))
        await st.audit(who, "queue.create" if before is None else "queue.replace", queue, before, current(queue))
        return config

    @r.patch("/v1/queues/{queue}", response_model=QueueConfig, responses=problems(401, 403, 404, 422), tags=["queues"])
    async def patch_queue(queue: QueueName, body: QueuePatch, who: Operator) -> QueueConfig:
        """Change some fields of an existing queue; raising the limit or resuming admits waiters at once."""
        before = current(queue)
        config = await svc.update_queue(queue, who.name, **body.model_dump(exclude_unset=True))
        await st.audit(who, "queue.update", queue, before, current(queue))
        return config

    @r.delete(
        "/v1/queues/{queue}",
        status_code=204,
        response_class=Response,
        responses=problems(401, 403, 404, 409, 422),
        tags=["queues"],
    )
    async def delete_queue(
        queue: QueueName,
        who: Operator,
        force: Annotated[bool, Query(description="Also cancel its waiters and revoke its leases.")] = False,
    ) -> Response:
        """Delete a queue; one with holders or waiters needs `force`."""
        before = current(queue)
        await svc.delete_queue(queue, force=force)
        await st.audit(who, "queue.delete", queue, before, None)
        return Response(status_code=204)

    async def control(queue: str, who: Principal, action: str, **fields: Any) -> QueueConfig:
        before = current(queue)
        config = await svc.update_queue(queue, who.name, **fields)
        await st.audit(who, action, queue, before, current(queue))
        return config

    @r.post(
        "/v1/queues/{queue}/reset-fields", response_model=QueueView, responses=problems(401, 403, 404, 422), tags=["queues"]
    )
    async def reset_fields(queue: QueueName, body: ResetFields, who: Operator) -> QueueView:
        """Give fields back to code/config: their configured values apply again and the operator overrides
        go (`{"fields": ["limit", ...]}`)."""
        before = current(queue)
        try:
            config = await svc.reset_fields(queue, body.fields)
        except ValueError as exc:
            raise ApiProblem(422, "Invalid request", str(exc), code="invalid") from None
        await st.audit(who, "queue.reset_fields", queue, before, {**(current(queue) or {}), "fields": body.fields})
        return view(config)

    @r.post("/v1/queues/{queue}/pause", response_model=QueueConfig, responses=problems(401, 403, 404, 422), tags=["queues"])
    async def pause(queue: QueueName, who: Operator) -> QueueConfig:
        """Stop admitting; holders keep running and waiters keep their place."""
        return await control(queue, who, "queue.pause", paused=True)

    @r.post("/v1/queues/{queue}/resume", response_model=QueueConfig, responses=problems(401, 403, 404, 422), tags=["queues"])
    async def resume(queue: QueueName, who: Operator) -> QueueConfig:
        """Admit again (waiters are granted at once where slots are free)."""
        return await control(queue, who, "queue.resume", paused=False)

    @r.post(
        "/v1/queues/{queue}/reset-marks", response_model=QueueStats, responses=problems(401, 403, 404, 422), tags=["queues"]
    )
    async def reset_marks(queue: QueueName, who: Operator) -> QueueStats:
        """Start the high-water marks again from the current values."""
        before = svc.queue_stats(queue).marks.model_dump(mode="json")
        await svc.reset_marks(queue)
        after = svc.queue_stats(queue)
        await st.audit(who, "queue.reset_marks", queue, before, after.marks.model_dump(mode="json"))
        return after
