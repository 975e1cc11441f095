"""The persistence seam. The service and the API talk to every backend through `Store`."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from ..model import AuditEntry, HeldLease, Job, JobPage, JobState, Marks, QueueConfig, QueueOverrides, StoredToken, Totals

# A job in one of these states will not run again; retention may prune it.
TERMINAL_STATES = frozenset(
    {JobState.succeeded, JobState.failed, JobState.cancelled, JobState.timed_out, JobState.interrupted}
)


class Store(Protocol):
    url: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def default_log_dir(self) -> Path | None:
        """Where job logs live unless configured (next to a database file); None: a temp dir."""

    # queues
    async def load_queues(self) -> list[QueueConfig]: ...

    async def save_queue(self, config: QueueConfig) -> None: ...

    async def delete_queue(self, name: str) -> None: ...

    async def load_queue_state(self) -> dict[str, tuple[Marks, Totals]]:
        """High-water marks and totals per queue, as last saved."""

    async def save_queue_state(self, states: dict[str, tuple[Marks, Totals]]) -> None: ...

    # jobs
    async def add_job(self, job: Job) -> Job:
        """Store a new job and return once it is durable; the copy returned carries its `seq` (arrival order)."""

    async def add_job_once(self, job: Job, key: str, fresh_after: float) -> tuple[Job, bool]:
        """Store `job` under an idempotency `key` (already scoped to its caller) unless a job created at or after
        `fresh_after` holds that key: then return that job and False. An older holder loses the key."""

    async def save_job(self, job: Job) -> None:
        """Replace a known job's stored state (its `seq` is kept)."""

    async def spill_jobs(self, jobs: list[Job]) -> list[Job]:
        """At close, keep job states that `save_job` could not store (disk full) where the next `open` stores them
        first; returns those kept (none: this store cannot fail that way, or has no room reserved)."""

    async def get_job(self, job_id: str) -> Job | None: ...

    async def list_jobs(
        self,
        state: JobState | None = None,
        queue: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        """Newest first; `next_cursor` continues after the last job of the page."""

    async def claim_jobs(self, queue: str, limit: int, now: float, skip: Collection[str] = ()) -> list[Job]:
        """Up to `limit` queued jobs of `queue` due at `now`, in (priority, seq) order, leaving out `skip`.

        Served by an index, so the cost does not grow with the number waiting.
        """

    async def prune_jobs(self, finished_before: float | None, keep: int | None) -> list[str]:
        """Delete terminal jobs finished before a time and beyond the newest `keep`; return their ids."""

    # audit log of operator actions
    async def add_audit(self, entry: AuditEntry) -> AuditEntry:
        """Append an entry; the returned copy carries its assigned increasing `id`."""

    async def list_audit(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        """Newest first."""

    # what a restart must not forget (see stores/sqlite_restart.py)
    async def count_queued(self) -> dict[str, int]:
        """Queued jobs per queue (queues with none may be left out)."""

    async def load_leases(self) -> list[HeldLease]: ...

    async def save_leases(
        self, put: list[HeldLease], drop: list[str], states: dict[str, tuple[Marks, Totals]] | None = None
    ) -> None:
        """Store granted remote leases, forget ended ones and save marks/totals, atomically."""

    async def load_fence(self) -> int: ...

    async def save_fence(self, fence: int) -> None:
        """Fences up to `fence` may be in use; the stored high-water never goes down."""

    async def load_overrides(self) -> dict[str, QueueOverrides]: ...

    async def save_overrides(self, name: str, record: QueueOverrides | None) -> None: ...

    # API tokens, hashed at rest
    async def save_token(self, token: StoredToken, replace: bool = True) -> bool:
        """Store `token` under its name, in one step: False (nothing stored) when a token of that name exists
        and `replace` is False, so of several creating one name at once exactly one succeeds."""
        ...

    async def find_token(self, token_hash: str) -> StoredToken | None: ...

    async def list_tokens(self) -> list[StoredToken]: ...

    async def delete_token(self, name: str) -> bool: ...


def parse_cursor(cursor: str | None) -> int | None:
    """A page cursor is the `seq` of the last job shown; anything else is a clear error."""
    if cursor is None:
        return None
    try:
        value = int(cursor)
    except ValueError:
        raise ValueError(f"invalid cursor {cursor!r}") from None
    if not 0 <= value < 2**63:  # SQLite integers are 64-bit: a larger one would fail inside the store
        raise ValueError(f"invalid cursor {cursor!r}")
    return value
