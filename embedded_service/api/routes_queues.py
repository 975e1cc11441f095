"""Queue configuration and operator controls; every change is audited with before -> after."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from ..model import QueueConfig, QueuePatch, QueueStats, Role
from .auth import Principal
from .deps import Need, QueueName
from .problems import problems
from .state import ApiState


def add_queue_routes(r: APIRouter, st: ApiState, need: Need) -> None:
    svc = st.service
    Viewer = Annotated[Principal, Depends(need(Role.viewer))]
    Operator = Annotated[Principal, Depends(need(Role.operator))]

    def current(name: str) -> dict[str, Any] | None:
        state = svc.engine.queues.get(name)
        return state.config.model_dump(mode="json") if state is not None else None

    @r.get("/v1/queues", response_model=list[QueueConfig], responses=problems(401, 403), tags=["queues"])
    async def list_queues(_: Viewer) -> list[QueueConfig]:
        """Every queue's configuration."""
        return [state.config for state in svc.engine.queues.values()]

    @r.get("/v1/queues/{queue}", response_model=QueueStats, responses=problems(401, 403, 404, 422), tags=["queues"])
    async def get_queue(queue: QueueName, _: Viewer) -> QueueStats:
        """One queue's live state."""
        state = svc.engine.queue(queue)
        return svc.engine.queue_stats(state, svc.clock.time())

    @r.put("/v1/queues/{queue}", response_model=QueueConfig, responses=problems(401, 403, 422), tags=["queues"])
    async def put_queue(queue: QueueName, body: QueuePatch, who: Operator) -> QueueConfig:
        """Create a queue or replace its whole configuration (fields left out take their defaults)."""
        before = current(queue)
        config = QueueConfig(name=queue, **body.model_dump(exclude_unset=True))
        await svc.store.save_queue(config)  # stored first: a change the store refuses is not applied
        svc.configure_queue(queue, **config.model_dump(exclude={"name"}))
        await st.audit(who, "queue.create" if before is None else "queue.replace", queue, before, current(queue))
        return config

    @r.patch("/v1/queues/{queue}", response_model=QueueConfig, responses=problems(401, 403, 404, 422), tags=["queues"])
    async def patch_queue(queue: QueueName, body: QueuePatch, who: Operator) -> QueueConfig:
        """Change some fields of an existing queue; raising the limit or resuming admits waiters at once."""
        before = current(queue)
        config = await svc.update_queue(queue, **body.model_dump(exclude_unset=True))
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
        config = await svc.update_queue(queue, **fields)
        await st.audit(who, action, queue, before, current(queue))
        return config

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
        state = svc.engine.queue(queue)
        before = state.marks.model_dump(mode="json")
        await svc.reset_marks(queue)
        await st.audit(who, "queue.reset_marks", queue, before, state.marks.model_dump(mode="json"))
        return svc.engine.queue_stats(state, svc.clock.time())
