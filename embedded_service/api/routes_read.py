"""Read-only routes: health, snapshot, history, events, metrics, audit and the compatibility views."""

import platform
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from .. import __version__
from ..errors import UnknownJob, UnknownQueue
from ..model import AuditEntry, Health, History, QueueStats, Role, Snapshot
from .auth import Principal
from .deps import Need, redact_url
from .events import EVENT_TYPES
from .lean import lean
from .problems import problems
from .state import ApiState
from .visibility import client_name

NO_STORE = {"Cache-Control": "no-store"}


class CompatHealth(BaseModel):
    """`GET /health` in the shape existing ops scripts poll."""

    status: str
    max_concurrent: int
    available_slots: int
    processing_count: int
    active_sessions: int


class CompatQueueStatus(BaseModel):
    """`GET /queue/status` in the shape existing ops scripts poll."""

    queue_size: int
    max_queue_size: int | None
    processing: int
    max_processing: int
    total_processed: int
    total_failed: int
    estimated_wait_time: float | None


_ONE_TYPE = "(" + "|".join(EVENT_TYPES) + ")"
EVENT_TYPES_PATTERN = f"^{_ONE_TYPE}(,{_ONE_TYPE})*$"


def add_read_routes(r: APIRouter, st: ApiState, need: Need) -> None:
    svc = st.service
    Viewer = Annotated[Principal, Depends(need(Role.viewer))]

    def stats(queue: str) -> QueueStats:
        for stats in st.snapshots.model().queues:
            if stats.config.name == queue:
                return stats
        raise UnknownQueue(queue)

    @r.get("/v1/health", response_model=Health, tags=["observe"])
    async def health() -> Health:
        """Liveness and versions; needs no token."""
        started = svc.started_at or svc.clock.time()
        return Health(
            status="draining" if st.draining else "ok",
            version=__version__,
            python=platform.python_version(),
            store=redact_url(svc.store.url),
            uptime_s=max(0.0, svc.clock.time() - started),
        )

    @r.get("/v1/snapshot", response_model=Snapshot, responses=problems(401, 403), tags=["observe"])
    @lean
    async def snapshot(who: Viewer) -> Response:
        """Queues, devices, host, leases and waiters now; `seq` grows with every change.
        A client sees its own leases and waiters only (others' are in the queue counts)."""
        return Response(st.broker.snapshot_json(client_name(who)), media_type="application/json", headers=NO_STORE)

    @r.get("/v1/history", response_model=History, responses=problems(401, 403, 422), tags=["observe"])
    async def history(_: Viewer, seconds: Annotated[float, Query(gt=0, le=86_400)] = 600) -> History:
        """1 Hz series per queue and device, for backfilling graphs."""
        return svc.history(seconds)

    @r.get(
        "/v1/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream"}, **problems(401, 403)},
        tags=["observe"],
    )
    async def events(
        who: Viewer,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
        since: Annotated[str | None, Query(description="Same as the Last-Event-ID header.")] = None,
        types: Annotated[
            str | None,
            Query(
                pattern=EVENT_TYPES_PATTERN,
                description="Only these event types, comma-separated (default: all): " + ", ".join(EVENT_TYPES),
            ),
        ] = None,
    ) -> StreamingResponse:
        """Server-sent events with ids to resume from: `snapshot` (at the configured rate), `lease`, `job`,
        `prune` (finished jobs removed by retention: `{"jobs": [ids]}`) and `audit`. A client receives only
        what it may read through GET: its own jobs, leases and waiters and the audit entries about them."""
        st.check_admitting()
        wanted = frozenset(types.split(",")) if types else frozenset(EVENT_TYPES)
        return StreamingResponse(
            st.broker.stream(last_event_id or since, wanted, client_name(who), holder=who.name),
            media_type="text/event-stream",
            headers={**NO_STORE, "X-Accel-Buffering": "no"},
        )

    @r.get("/v1/audit", response_model=list[AuditEntry], responses=problems(401, 403, 422), tags=["observe"])
    async def audit(
        who: Viewer,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: Annotated[int | None, Query(ge=1)] = None,
    ) -> list[AuditEntry]:
        """Operator actions, newest first: who (token name), what, before and after.
        A client sees the entries it caused and those about its own jobs."""
        entries = await svc.store.list_audit(limit=limit, before_id=before_id)
        client = client_name(who)
        if client is None:
            return entries
        return [entry for entry in entries if entry.actor == client or await _about_own_job(entry, client)]

    async def _about_own_job(entry: AuditEntry, client: str) -> bool:
        if not entry.action.startswith("job."):
            return False
        try:
            return (await svc.get_job(entry.target)).owner == client
        except UnknownJob:
            return False

    @r.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}, **problems(401, 403)},
        tags=["observe"],
    )
    async def metrics(_: Viewer) -> Response:
        """Prometheus exposition: per-queue and per-device gauges and counters, wait and hold histograms."""
        return Response(st.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @r.get("/health", response_model=CompatHealth, responses=problems(404, 422), tags=["compatibility"])
    async def compat_health(queue: Annotated[str, Query(max_length=64)] = "default") -> CompatHealth:
        """Slots of one queue (default `default`) in the legacy shape; needs no token, like a load balancer's probe."""
        s = stats(queue)
        return CompatHealth(
            status="draining" if st.draining else "healthy",
            max_concurrent=s.config.limit,
            available_slots=max(0, s.config.limit - s.in_use),
            processing_count=s.in_use,
            active_sessions=s.owners,
        )

    @r.get("/queue/status", response_model=CompatQueueStatus, responses=problems(401, 403, 404, 422), tags=["compatibility"])
    async def compat_queue_status(_: Viewer, queue: Annotated[str, Query(max_length=64)] = "default") -> CompatQueueStatus:
        """One queue in the legacy shape; failed = timed out + rejected + expired + revoked."""
        s = stats(queue)
        t = s.totals
        return CompatQueueStatus(
            queue_size=s.waiting,
            max_queue_size=s.config.max_waiting,
            processing=s.in_use,
            max_processing=s.config.limit,
            total_processed=t.released,
            total_failed=t.timed_out + t.rejected + t.expired + t.revoked,
            estimated_wait_time=s.est_wait_s,
        )
