"""Pydantic schemas shared by the engine, the stores, the HTTP API, the client
and the desktop app.

These are the wire format: the API returns them, the client parses them and the
dashboard draws them, so a field added here reaches every layer at once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Bounds of numeric input: every number a client sends is finite (no NaN/Infinity) and in a sane range.
MIN_RATE, MAX_RATE = 0.001, 1_000_000.0  # admissions per second
MAX_COUNT = 10_000_000  # counts (max_waiting, per_gpu)
MAX_SECONDS = 31_536_000.0  # one year
MAX_MIB = 16 * 1024 * 1024  # 16 TiB of GPU memory

# size caps of a command job's input (the request body as a whole is capped by the server, 4 MiB by default)
MAX_ARGV_ITEMS = 4096
MAX_ARG_CHARS = 32_768
MAX_ENV_VARS = 256
MAX_ENV_NAME_CHARS = 256
MAX_ENV_VALUE_CHARS = 32_768
MAX_COMMAND_CHARS = 256 * 1024  # argv and env together (the kernel's limit for both is 2 MiB on Linux)
MAX_PATH_CHARS = 4096

Placement = Literal["spread", "pack"]
"""Where a queue's GPU leases go: `spread` (emptiest device first) or `pack` (best fit: fullest device that fits)."""

DeviceHealth = Literal["ok", "stale", "unreadable", "lost", "unified"]
"""How far admission can trust a GPU's figures (see `DeviceInfo.health`)."""


class QueueConfig(BaseModel):
    """Operator-set configuration of one named queue."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=QUEUE_NAME_PATTERN)
    limit: int = Field(default=1, ge=0, le=1_000_000, description="Slots: at most this many holders at once.")
    paused: bool = Field(default=False, description="A paused queue admits nobody; holders keep running.")
    max_waiting: int | None = Field(
        default=None, ge=0, le=MAX_COUNT, description="Waiters beyond this are rejected at once (None: unbounded)."
    )
    timeout_s: float = Field(default=300.0, gt=0, le=86_400, description="Default acquire wait.")
    rate: float | None = Field(
        default=None, ge=MIN_RATE, le=MAX_RATE, description="Admissions per second (token bucket), 0.001 to 1e6."
    )
    burst: int = Field(default=1, ge=1, le=1_000_000, description="Token bucket size for `rate`.")
    stuck_after_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS, description="A holder older than this is stuck.")
    per_gpu: int | None = Field(
        default=None, ge=1, le=MAX_COUNT, description="At most this many leases of this queue on one GPU (None: no cap)."
    )
    placement: Placement = Field(
        default="spread",
        description="GPU placement: 'spread' puts a lease on the emptiest device (fewest leases, then most free "
        "memory); 'pack' on the fullest device that fits (best fit, keeps whole devices free for big requests).",
    )


class QueuePatch(BaseModel):
    """A partial change to a queue's configuration."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    limit: int | None = Field(default=None, ge=0, le=1_000_000)
    paused: bool | None = None
    max_waiting: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    rate: float | None = Field(default=None, ge=MIN_RATE, le=MAX_RATE)
    burst: int | None = Field(default=None, ge=1, le=1_000_000)
    stuck_after_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    per_gpu: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    placement: Placement | None = None


M = TypeVar("M", bound=BaseModel)


_PLAIN: set[type[BaseModel]] = set()  # models `trusted` has checked to be plain


def _plain(cls: type[BaseModel]) -> bool:
    if cls.__pydantic_post_init__ is not None or cls.__private_attributes__ or cls.model_config.get("extra") == "allow":
        return False
    _PLAIN.add(cls)
    return True


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """A `cls` made of `values` the engine built itself, every field given with its declared type: not validated.

    What `cls.model_construct(**values)` gives when every field is passed, without its Python loop over the
    fields (aliases, defaults): about 0.5 us against 3-7 us (pydantic 2.14) per model, which is most of a snapshot
    of many busy queues. Only for plain models (no private attributes, no post-init, no extra); `TypeError` when a
    field is missing or unknown. Serializing the result works as for a validated model.
    """
    fields = cls.__pydantic_fields__
    if len(values) != len(fields) or (cls not in _PLAIN and not _plain(cls)):
        raise TypeError(f"trusted({cls.__name__}) needs exactly its fields {sorted(fields)}, got {sorted(values)}")
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(fields))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


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
    host: str | None = Field(default=None, description="Redis mode: the host whose GPUs `devices` are (None in-process).")
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
    position: int = Field(
        default=0, description="1-based place in line; 0 when not computed (acquire poll answers in lines over 100)."
    )
    job_id: str | None = None


class GpuProcess(BaseModel):
    pid: int
    used_mib: int | None = None


class DeviceSpec(BaseModel):
    """A GPU known from configuration (hosts without NVML, tests)."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    name: str = "GPU"
    uuid: str | None = None
    memory_total_mib: int = Field(default=0, ge=0, description="0: size unknown (memory requests need a budget).")


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
    per_process: bool = Field(
        default=True, description="Whether the probe could list the processes on this GPU (with their memory)."
    )
    health: DeviceHealth = Field(
        default="ok",
        description="'ok': figures fresh; 'stale': the last reading failed, the last good figures are used for a "
        "short time; 'unreadable': memory unknown, no new memory-bound work; 'lost': no new work at all; 'unified': "
        "the device reports no memory size, memory requests only against a configured budget.",
    )
    health_reason: str | None = Field(default=None, description="Why the health is not 'ok', in one line.")
    memory_foreign_mib: int | None = Field(
        default=None, description="Memory held by processes that are not this service's jobs (admission's view)."
    )
    memory_free_mib: int | None = Field(
        default=None, description="Memory admission can still promise here (None: no memory-bound work here now)."
    )
    memory_budget_mib: int | None = Field(default=None, description="Configured budget of a device of unknown size.")
    host: str | None = Field(default=None, description="Redis mode: the host whose probe published it (None in-process).")


class HostInfo(BaseModel):
    cpu_pct: float | None = None
    cpu_count: int | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    load_1m: float | None = None


class InstanceInfo(BaseModel):
    """One process of a redis-mode deployment (a server, an embedding worker, a ClusterSlots user)."""

    id: str = Field(description="Its process id in Redis: host:pid:random.")
    host: str
    pid: int | None = None
    version: str | None = Field(default=None, description="SlotDeck version (None: a process using ClusterSlots alone).")
    last_heartbeat: float | None = Field(default=None, description="Unix seconds (Redis clock) of its last heartbeat.")
    stale: bool = Field(description="No heartbeat within its liveness TTL: its waiters are dropped, its leases expire.")
    url: str | None = Field(default=None, description="The HTTP API it serves (a `slotdeck serve`), for failover.")


class ClusterHost(BaseModel):
    """One host of a redis-mode deployment: its processes and the GPUs its probe publishes."""

    host: str
    instances: list[str] = Field(default_factory=list, description="Ids of its processes (see `instances`).")
    last_heartbeat: float | None = Field(default=None, description="Unix seconds (Redis clock): its newest heartbeat.")
    stale: bool = Field(description="Every process on it is stale (or it has none left).")
    devices: list[DeviceInfo] = Field(default_factory=list, description="Its GPUs as its probe last published them.")
    publisher: str | None = Field(
        default=None, description="The process (an `instances` id) elected to publish its GPUs now; None: none."
    )


class Snapshot(BaseModel):
    """Everything an operator sees, at one instant."""

    seq: int
    at: float
    queues: list[QueueStats]
    devices: list[DeviceInfo] = Field(default_factory=list)
    gpu_probe: str | None = Field(default=None, description="Why no GPU figures are available, in one line.")
    gpu_selection: str | None = Field(
        default=None, description="Which GPUs this service may use when restricted (CUDA_VISIBLE_DEVICES, --gpus)."
    )
    host: HostInfo | None = None
    leases: list[LeaseInfo] = Field(default_factory=list)
    waiters: list[WaiterInfo] = Field(default_factory=list)
    instances: list[InstanceInfo] = Field(
        default_factory=list, description="Redis mode: every process of the deployment (empty in-process)."
    )
    hosts: list[ClusterHost] = Field(
        default_factory=list, description="Redis mode: every host of the deployment with its GPUs (empty in-process)."
    )


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
    """`cancelling` is shown (never stored) for a running job whose cancel was asked and whose process is
    still being stopped (SIGTERM, then SIGKILL after the kill grace); its final state follows as a job event."""

    queued = "queued"
    running = "running"
    cancelling = "cancelling"
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

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    task: str = Field(min_length=1, max_length=200)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    gpus: int = Field(default=0, ge=0, le=64)
    gpu_mem_mib: int = Field(default=0, ge=0)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    max_attempts: int = Field(default=1, ge=1, le=100)
    max_runtime_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)


class CommandSubmit(BaseModel):
    """Run a command (argv, no shell) in its own process group."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    argv: list[Annotated[str, Field(max_length=MAX_ARG_CHARS)]] = Field(min_length=1, max_length=MAX_ARGV_ITEMS)
    queue: str = Field(default="default", pattern=QUEUE_NAME_PATTERN)
    env: dict[
        Annotated[str, Field(min_length=1, max_length=MAX_ENV_NAME_CHARS, pattern=r"^[^=\x00]+$")],
        Annotated[str, Field(max_length=MAX_ENV_VALUE_CHARS)],
    ] = Field(default_factory=dict, max_length=MAX_ENV_VARS, description="Values are write-only: never shown again.")
    cwd: str | None = Field(default=None, min_length=1, max_length=MAX_PATH_CHARS)
    gpus: int = Field(default=0, ge=0, le=64)
    gpu_mem_mib: int = Field(default=0, ge=0, le=MAX_MIB)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    max_attempts: int = Field(default=1, ge=1, le=100)
    max_runtime_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)

    @field_validator("argv")
    @classmethod
    def _argv_not_blank(cls, argv: list[str]) -> list[str]:
        if not argv[0].strip():
            raise ValueError("argv[0] must name a program")
        if any("\x00" in arg for arg in argv):
            raise ValueError("arguments cannot contain NUL characters")
        return argv

    @model_validator(mode="after")
    def _fits(self) -> CommandSubmit:
        size = sum(len(a) for a in self.argv) + sum(len(k) + len(v) for k, v in self.env.items())
        if size > MAX_COMMAND_CHARS:
            raise ValueError(f"argv and env together may have at most {MAX_COMMAND_CHARS} characters, not {size}")
        if any("\x00" in v for v in self.env.values()):
            raise ValueError("env values cannot contain NUL characters")
        return self


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
    survivors: list[int] = Field(
        default_factory=list, description="Pids of the job's processes still alive after it was stopped (should be none)."
    )
    idempotency_key: str | None = Field(
        default=None,
        description="The submit's Idempotency-Key: the same key from the same caller within a day gets this job back.",
    )

    @property
    def replayed(self) -> bool:
        """True when a submit got this job back for its Idempotency-Key instead of creating one (not stored)."""
        return False

    def as_replay(self) -> Job:
        """This job, answered again to a submit that repeated its Idempotency-Key (a `ReplayedJob`)."""
        return ReplayedJob.model_validate(self.__dict__)


class ReplayedJob(Job):
    """A job answered again to a submit that repeated its Idempotency-Key: the same fields and JSON as `Job`.

    A subclass rather than a private attribute on every `Job`: pydantic sets up private attributes on each
    model built, and jobs are built on every submit and every read of the store."""

    @property
    def replayed(self) -> bool:
        return True


class LogPart(BaseModel):
    """Output of a job's log page; `attempt` is set when that attempt's output begins at the part's first byte."""

    attempt: int | None = None
    text: str


class JobLogPage(BaseModel):
    """Whole lines of a job's output between log positions `start` and `end` (bytes since its first attempt's
    first byte); `first` is the earliest position still kept: ask again with `before=start` until start == first.
    Attempt boundaries come from the service's own index, never from the output."""

    start: int
    end: int
    first: int
    parts: list[LogPart]


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

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    owner: str | None = Field(default=None, max_length=200)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    gpus: int = Field(default=0, ge=0, le=64)
    gpu_mem_mib: int = Field(default=0, ge=0, le=MAX_MIB)
    timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    ttl_s: float = Field(default=30.0, ge=1, le=3600)
    wait_s: float = Field(default=20.0, ge=0, le=30, description="Long-poll bound of this one request.")
    waiter_id: str | None = Field(default=None, description="Resume polling a waiter from an earlier 202.")
    request_id: str | None = Field(
        default=None,
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="A name the client gives this request: a retry with it resumes the same waiter or lease, "
        "and POST /v1/waiters/{request_id}/cancel withdraws it even before the first answer.",
    )


class AcquireResponse(BaseModel):
    """A lease (status 'granted') or a waiter to poll again (status 'waiting')."""

    status: str
    lease: LeaseInfo | None = None
    waiter: WaiterInfo | None = None


class Health(BaseModel):
    status: str = Field(default="ok", description="ok, draining, or store_failing while the store refuses writes.")
    version: str
    python: str
    store: str
    uptime_s: float
    store_ok: bool = Field(default=True, description="Whether the store's last write went through.")
    store_fault: str | None = Field(default=None, description="Why it fails: disk full, read-only, corrupt, ...")
    store_failing_since: float | None = Field(default=None, description="When the current failing spell began (epoch s).")
    store_errors: int = Field(default=0, description="Store failures counted since the service started.")


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
    host: str | None = Field(default=None, description="Redis mode: the host whose GPUs `devices` are (None in-process).")
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
