"""Pydantic schemas shared by the engine, the stores, the HTTP API, the client
and the desktop app.

These are the wire format: the API returns them, the client parses them and the
dashboard draws them, so a field added here reaches every layer at once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class QueueConfig(BaseModel):
    """Operator-set configuration of one named queue."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=QUEUE_NAME_PATTERN)
    limit: int = Field(default=1, ge=0, le=1_000_000, description="Slots: at most this many holders at once.")
    paused: bool = Field(default=False, description="A paused queue admits nobody; holders keep running.")
    max_waiting: int | None = Field(
        default=None, ge=0, description="Waiters beyond this are rejected at once (None: unbounded)."
    )
    timeout_s: float = Field(default=300.0, gt=0, le=86_400, description="Default acquire wait.")
    rate: float | None = Field(default=None, gt=0, description="Admissions per second (token bucket).")
    burst: int = Field(default=1, ge=1, description="Token bucket size for `rate`.")
    stuck_after_s: float | None = Field(default=None, gt=0, description="A holder older than this is stuck.")
    per_gpu: int | None = Field(
        default=None, ge=1, description="At most this many leases of this queue on one GPU (None: no cap)."
    )


class QueuePatch(BaseModel):
    """A partial change to a queue's configuration."""

    model_config = ConfigDict(extra="forbid")

    limit: int | None = Field(default=None, ge=0, le=1_000_000)
    paused: bool | None = None
    max_waiting: int | None = Field(default=None, ge=0)
    timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    rate: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1)
    stuck_after_s: float | None = Field(default=None, gt=0)
    per_gpu: int | None = Field(default=None, ge=1)


class Totals(BaseModel):
    """Cumulative counters of one queue since it was created."""

    granted: int = 0
    released: int = 0
    timed_out: int = 0
    rejected: int = 0
    cancelled: int = 0
    expired: int = 0
    revoked: int = 0
    bad_releases: int = Field(default=0, description="Double releases, releases by non-holders or of dead leases.")
    jobs_failed: int = Field(default=0, description="Jobs of this queue that ended failed (no attempts left).")
    jobs_timed_out: int = Field(default=0, description="Jobs of this queue that ended timed out (ran past max_runtime_s).")


class Marks(BaseModel):
    """High-water marks with the wall time each was reached."""

    in_use: int = 0
    in_use_at: float | None = None
    waiting: int = 0
    waiting_at: float | None = None
    reset_at: float | None = None


class QueueStats(BaseModel):
    """Live state of one queue as shown to operators."""

    config: QueueConfig
    in_use: int
    waiting: int
    owners: int = Field(description="Distinct owners holding or waiting.")
    marks: Marks
    totals: Totals
    wait_p50_s: float | None = None
    wait_p95_s: float | None = None
    hold_p50_s: float | None = None
    hold_p95_s: float | None = None
    est_wait_s: float | None = Field(default=None, description="Estimated wait of a newcomer; shown, not promised.")
    stuck: int = 0


class LeaseInfo(BaseModel):
    """A granted slot."""

    id: str
    queue: str
    owner: str | None = None
    priority: int = 0
    fence: int
    devices: list[int] = Field(default_factory=list)
    gpu_mem_mib: int = 0
    granted_at: float
    waited_s: float = 0.0
    expires_at: float | None = None
    job_id: str | None = None
    stuck: bool = False


class WaiterInfo(BaseModel):
    """A request waiting for a slot."""

    id: str
    queue: str
    owner: str | None = None
    priority: int = 0
    gpus: int = 0
    gpu_mem_mib: int = 0
    enqueued_at: float
    deadline: float | None = None
    position: int = 0
    job_id: str | None = None


class GpuProcess(BaseModel):
    pid: int
    used_mib: int | None = None


class DeviceSpec(BaseModel):
    """A GPU known from configuration (hosts without NVML, tests)."""

    index: int = Field(ge=0)
    name: str = "GPU"
    uuid: str | None = None
    memory_total_mib: int = Field(default=0, ge=0)


class DeviceInfo(BaseModel):
    """One GPU as seen by admission and by operators."""

    index: int
    uuid: str | None = None
    name: str = "GPU"
    pci_bus_id: str | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    memory_reserved_mib: int = Field(default=0, description="Memory promised to running leases.")
    utilization_pct: float | None = None
    temperature_c: float | None = None
    processes: list[GpuProcess] = Field(default_factory=list)
    leases: list[str] = Field(default_factory=list)
    source: str = Field(default="config", description="'nvml' or 'config'.")
    error: str | None = Field(default=None, description="Why some figures are missing.")


class HostInfo(BaseModel):
    cpu_pct: float | None = None
    cpu_count: int | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    load_1m: float | None = None


class Snapshot(BaseModel):
    """Everything an operator sees, at one instant."""

    seq: int
    at: float
    queues: list[QueueStats]
    devices: list[DeviceInfo] = Field(default_factory=list)
    gpu_probe: str | None = Field(default=None, description="Why no GPU figures are available, in one line.")
    host: HostInfo | None = None
    leases: list[LeaseInfo] = Field(default_factory=list)
    waiters: list[WaiterInfo] = Field(default_factory=list)


class QueueSeries(BaseModel):
    in_use: list[int]
    waiting: list[int]
    limit: list[int]


class DeviceSeries(BaseModel):
    memory_used_mib: list[float | None]
    memory_reserved_mib: list[float]
    utilization_pct: list[float | None]


class History(BaseModel):
    """1 Hz series for backfilling graphs; `t` are wall times shared by all series."""

    t: list[float]
    queues: dict[str, QueueSeries]
    devices: dict[str, DeviceSeries] = Field(default_factory=dict)
    host_cpu_pct: list[float | None] = Field(default_factory=list)
    host_memory_used_mib: list[float | None] = Field(default_factory=list)


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed_out"
    interrupted = "interrupted"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled, JobState.timed_out})


class JobKind(StrEnum):
    task = "task"
    command = "command"


class TaskSubmit(BaseModel):
    """Run a registered callable."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    max_attempts: int = Field(default=1, ge=1, le=100)
    max_runtime_s: float | None = Field(default=None, gt=0)


class CommandSubmit(BaseModel):
    """Run a command (argv, no shell) in its own process group."""

    model_config = ConfigDict(extra="forbid")

    argv: list[str] = Field(min_length=1)
    queue: str = Field(default="default", pattern=QUEUE_NAME_PATTERN)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    gpus: int = Field(default=0, ge=0, le=64)
    gpu_mem_mib: int = Field(default=0, ge=0)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    max_attempts: int = Field(default=1, ge=1, le=100)
    max_runtime_s: float | None = Field(default=None, gt=0)

    @field_validator("argv")
    @classmethod
    def _argv_not_blank(cls, argv: list[str]) -> list[str]:
        if not argv[0].strip():
            raise ValueError("argv[0] must name a program")
        return argv


class Job(BaseModel):
    """A durable unit of work and its outcome."""

    id: str
    kind: JobKind
    queue: str
    state: JobState = JobState.queued
    owner: str | None = None
    priority: int = 0
    task: str | None = None
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    argv: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    gpus: int = 0
    gpu_mem_mib: int = 0
    max_attempts: int = 1
    attempts: int = 0
    max_runtime_s: float | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    not_before: float | None = Field(default=None, description="Retry backoff: not claimed before this time.")
    seq: int = Field(default=0, description="Arrival order, assigned by the store.")
    exit_code: int | None = None
    result: Any = None
    error: str | None = None
    devices: list[int] = Field(default_factory=list)
    pid: int | None = None
    lease_id: str | None = None
    cpu_pct: float | None = Field(default=None, description="Live CPU of the job's process tree.")
    rss_mib: float | None = Field(default=None, description="Live resident memory of the job's process tree.")
    gpu_mem_used_mib: int | None = Field(default=None, description="Real GPU memory of its processes (NVML).")


class JobPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = None


class Role(StrEnum):
    viewer = "viewer"
    client = "client"
    operator = "operator"
    admin = "admin"


class TokenInfo(BaseModel):
    name: str
    role: Role
    created_at: float


class StoredToken(TokenInfo):
    """A token as kept at rest: only its hash, never the token itself."""

    token_hash: str


class AuditEntry(BaseModel):
    id: int = 0
    at: float
    actor: str
    action: str
    target: str
    before: Any = None
    after: Any = None


class AcquireRequest(BaseModel):
    """Body of POST /v1/queues/{q}/leases."""

    model_config = ConfigDict(extra="forbid")

    owner: str | None = Field(default=None, max_length=200)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    gpus: int = Field(default=0, ge=0, le=64)
    gpu_mem_mib: int = Field(default=0, ge=0)
    timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    ttl_s: float = Field(default=30.0, ge=1, le=3600)
    wait_s: float = Field(default=20.0, ge=0, le=30, description="Long-poll bound of this one request.")
    waiter_id: str | None = Field(default=None, description="Resume polling a waiter from an earlier 202.")


class AcquireResponse(BaseModel):
    """A lease (status 'granted') or a waiter to poll again (status 'waiting')."""

    status: str
    lease: LeaseInfo | None = None
    waiter: WaiterInfo | None = None


class Health(BaseModel):
    status: str = "ok"
    version: str
    python: str
    store: str
    uptime_s: float


# ------------------------------------------------------- what survives a restart


class HeldLease(BaseModel):
    """A remote lease (one with a TTL) as stored, so that a restarted service still counts it.

    `expires_at` is the epoch time of its last known expiry; on restore a lease
    gets at least one full `ttl_s` from the restart to be renewed or released.
    """

    id: str
    queue: str
    owner: str | None = None
    priority: int = 0
    fence: int
    devices: list[int] = Field(default_factory=list)
    gpu_mem_mib: int = 0
    granted_at: float
    waited_s: float = 0.0
    ttl_s: float
    expires_at: float
    holder: str | None = Field(default=None, description="Name of the API token that acquired it.")


class FieldOverride(BaseModel):
    """A queue field an operator set live: the value, who (token name) and when (epoch seconds)."""

    value: Any
    by: str
    at: float


class QueueOverrides(BaseModel):
    """Per queue: the configured values (code/config, over the field defaults) and the operator's overrides."""

    configured: dict[str, Any] = Field(default_factory=dict)
    overrides: dict[str, FieldOverride] = Field(default_factory=dict)


class QueueView(QueueConfig):
    """`GET /v1/queues` item: the live configuration, what code/config set, and which fields an operator set."""

    overrides: dict[str, FieldOverride] = Field(
        default_factory=dict, description="Fields an operator set live: {field: {value, by, at}}; they win over code."
    )
    configured: dict[str, Any] = Field(
        default_factory=dict, description="The values code/config gives every field (what a reset restores)."
    )


class QueueStatsView(QueueStats):
    """`GET /v1/queues/{q}`: live state plus `overrides` and `configured` as in `QueueView`."""

    overrides: dict[str, FieldOverride] = Field(default_factory=dict)
    configured: dict[str, Any] = Field(default_factory=dict)


class ResetFields(BaseModel):
    """Body of POST /v1/queues/{q}/reset-fields."""

    model_config = ConfigDict(extra="forbid")

    fields: list[str] = Field(min_length=1, max_length=16, description="Queue fields to give back to code/config.")
