"""Read-only routes: health, snapshot, history, events, metrics, audit and the compatibility views."""

import contextlib
import platform
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from .. import __version__
from ..errors import StoreFault, UnknownJob
from ..model import AuditEntry, Health, History, QueueStats, Role, Snapshot
from ..stores.faults import StoreHealth
from .auth import Principal
from .deps import Need, redact_url
from .events import EVENT_TYPES, SNAPSHOT_INTERVAL_MAX_S
from .lean import lean
from .problems import problems
from .state import ApiState
from .visibility import client_name

PROBE_WAIT_S = 2.0  # /health waits at most this long for Redis (redis mode): a probe must answer, not hang

NO_STORE = {"Cache-Control": "no-store"}


class CompatHealth(BaseModel):
    """`GET /health` in the shape existing ops scripts poll."""

    status: str = Field(description="healthy, draining, or store_failing while the store refuses writes.")
    store_fault: str | None = Field(
        default=None,
        description="Only while the store fails: why (disk full, read-only, corrupt, ...), as /v1/health says.",
    )
    max_concurrent: int
    available_slots: int
    processing_count: int
    active_sessions: int


class CompatQueueStatus(BaseModel):
    """`GET /queue/status` in the shape existing ops scripts poll, each field with the meaning it has there."""

    queue_size: int = Field(description="Waiting now: engine waiters plus every queued job.")
    max_queue_size: int = Field(description="High-water mark of queue_size (since the last reset-marks).")
    processing: int = Field(description="Slots in use now.")
    max_processing: int = Field(description="High-water mark of processing (since the last reset-marks).")
    total_processed: int = Field(description="Holds that ended normally, less jobs that ended failed or timed out.")
    total_failed: int = Field(
        description="Failed and timed-out work: jobs failed or timed out, waits timed out, rejected (queue full), "
        "leases expired or revoked."
    )
    estimated_wait_time: float | None = Field(description="Seconds a newcomer would wait (estimate; null: unknown).")


_ONE_TYPE = "(" + "|".join(EVENT_TYPES) + ")"
EVENT_TYPES_PATTERN = f"^{_ONE_TYPE}(,{_ONE_TYPE})*$"


def add_read_routes(r: APIRouter, st: ApiState, need: Need) -> None:
    svc = st.service
    Viewer = Annotated[Principal, Depends(need(Role.viewer))]

    def stats(queue: str) -> QueueStats:
        """One queue's figures, built for it alone (not a whole snapshot of every queue)."""
        return svc.queue_stats(queue)

    def store_health() -> StoreHealth | None:
        """The health to show: Redis' while it does not answer (redis mode), else the store's (None: it cannot fail)."""
        health: StoreHealth | None = getattr(svc.store, "health", None)  # stores that can fail keep a StoreHealth
        if svc.cluster is not None and (health is None or health.failing is None) and svc.cluster.health.failing:
            return svc.cluster.health
        return health

    def store_fault() -> str | None:
        """Why the store (or, in redis mode, Redis) fails now (None: it does not, or cannot fail)."""
        health = store_health()
        return health.failing if health is not None else None

    @r.get("/v1/health", response_model=Health, tags=["observe"])
    async def health() -> Health:
        """Liveness and versions; needs no token."""
        started = svc.started_at or svc.clock.time()
        health = store_health()
        fault = store_fault()
        return Health(
            status="draining" if st.draining else "store_failing" if fault else "ok",
            version=__version__,
            python=platform.python_version(),
            store=redact_url(svc.store_url),
            uptime_s=max(0.0, svc.clock.time() - started),
            store_ok=fault is None,
            store_fault=fault,
            store_failing_since=health.since if health is not None else None,
            store_errors=health.total_errors if health is not None else 0,
        )

    @r.get("/v1/snapshot", response_model=Snapshot, responses=problems(401, 403), tags=["observe"])
    @lean
    async def snapshot(who: Viewer) -> Response:
        """Queues, devices, host, leases and waiters now; `seq` grows with every change.
        A client sees its own leases and waiters only (others' are in the queue counts)."""
        await svc.refresh()  # redis mode: the deployment's figures now
        body = st.broker.snapshot_json(client_name(who))
        await svc.keeper.sync_shown()  # the totals shown are stored first: they never go backwards after a crash
        return Response(body, media_type="application/json", headers=NO_STORE)

    @r.get("/v1/history", response_model=History, responses=problems(401, 403, 422), tags=["observe"])
    async def history(_: Viewer, seconds: Annotated[float, Query(gt=0, le=86_400)] = 600) -> History:
        """1 Hz series per queue and device, for backfilling graphs (redis mode: the deployment's, the same
        from every instance)."""
        return await svc.read_history(seconds)

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
        snapshot_interval_s: Annotated[
            float,
            Query(
                ge=0,
                le=SNAPSHOT_INTERVAL_MAX_S,
                description="At most one snapshot per this many seconds, always the newest (0: every one; "
                "a dashboard watching a server out of focus asks for 1). Other events are not slowed.",
            ),
        ] = 0.0,
    ) -> StreamingResponse:
        """Server-sent events with ids to resume from: `snapshot` (at the configured rate, or slower with
        `snapshot_interval_s`), `lease`, `job`, `prune` (finished jobs removed by retention: `{"jobs": [ids]}`)
        and `audit`. A client receives only what it may read through GET: its own jobs, leases and waiters and
        the audit entries about them. Ids: `<run>-<n>` numbered by this server run (a reconnect to a restarted
        server gets all that is kept); in redis mode the deployment's Redis stream ids, the same events with
        the same ids on every instance, so `Last-Event-ID` resumes on any instance and across restarts."""
        st.check_admitting()
        wanted = frozenset(types.split(",")) if types else frozenset(EVENT_TYPES)
        stream = st.broker.stream(last_event_id or since, wanted, client_name(who), who.name, snapshot_interval_s)
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={**NO_STORE, "X-Accel-Buffering": "no"},
        )

    @r.get("/v1/audit", response_model=list[AuditEntry], responses=problems(401, 403, 422), tags=["observe"])
    async def audit(
        who: Viewer,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
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
        await svc.refresh()
        body = st.metrics.exposition()
        await svc.keeper.sync_shown()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @r.get(
        "/health",
        response_model=CompatHealth,
        response_model_exclude_none=True,  # the legacy shape exactly while the store is fine
        responses=problems(404, 422),
        tags=["compatibility"],
    )
    async def compat_health(queue: Annotated[str, Query(max_length=64)] = "default") -> CompatHealth:
        """Slots of one queue (default `default`) in the legacy shape; needs no token, like a load balancer's probe.
        Redis mode: while Redis does not answer, the last figures read with `status: store_failing`."""
        with contextlib.suppress(StoreFault):  # counted by the cluster's health, shown below
            await svc.refresh(wait_s=PROBE_WAIT_S)
        s = stats(queue)
        fault = store_fault()
        return CompatHealth(
            status="draining" if st.draining else "store_failing" if fault else "healthy",
            store_fault=fault,
            max_concurrent=s.config.limit,
            available_slots=max(0, s.config.limit - s.in_use),
            processing_count=s.in_use,
            active_sessions=s.owners,
        )

    @r.get("/queue/status", response_model=CompatQueueStatus, responses=problems(401, 403, 404, 422), tags=["compatibility"])
    async def compat_queue_status(_: Viewer, queue: Annotated[str, Query(max_length=64)] = "default") -> CompatQueueStatus:
        """One queue in the legacy shape: `max_*` are high-water marks; failed = jobs failed or timed out + waits
        timed out + rejected + expired + revoked."""
        await svc.refresh()
        s = stats(queue)
        await svc.keeper.sync_shown((queue,))
        t = s.totals
        job_failures = t.jobs_failed + t.jobs_timed_out
        return CompatQueueStatus(
            queue_size=s.waiting,
            max_queue_size=s.marks.waiting,
            processing=s.in_use,
            max_processing=s.marks.in_use,
            total_processed=max(0, t.released - job_failures),
            total_failed=job_failures + t.timed_out + t.rejected + t.expired + t.revoked,
            estimated_wait_time=s.est_wait_s,
        )
