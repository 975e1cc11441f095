"""`memory://`: keeps everything in this process; for tests and throwaway services."""

from __future__ import annotations

import bisect
from collections.abc import Collection
from pathlib import Path

from ..model import AuditEntry, Job, JobPage, JobState, Marks, QueueConfig, StoredToken, Totals
from .base import TERMINAL_STATES, parse_cursor
from .memory_restart import MemoryRestartMixin


class MemoryStore(MemoryRestartMixin):
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._queues: dict[str, QueueConfig] = {}
        self._queue_state: dict[str, tuple[Marks, Totals]] = {}
        self._audit: list[AuditEntry] = []
        self._tokens: dict[str, StoredToken] = {}
        self._jobs: dict[str, Job] = {}  # insertion order is seq order
        self._queued: dict[str, list[tuple[int, int, str]]] = {}  # queue -> sorted (priority, seq, id)
        self._seq = 0
        self._idem: dict[str, str] = {}  # scoped idempotency key -> job id
        self._restart_init()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def default_log_dir(self) -> Path | None:
        return None

    async def load_queues(self) -> list[QueueConfig]:
        return list(self._queues.values())

    async def save_queue(self, config: QueueConfig) -> None:
        self._queues[config.name] = config.model_copy()

    async def delete_queue(self, name: str) -> None:
        self._queues.pop(name, None)
        self._queue_state.pop(name, None)

    async def load_queue_state(self) -> dict[str, tuple[Marks, Totals]]:
        return {name: (m.model_copy(), t.model_copy()) for name, (m, t) in self._queue_state.items()}

    async def save_queue_state(self, states: dict[str, tuple[Marks, Totals]]) -> None:
        self._queue_state.update({name: (m.model_copy(), t.model_copy()) for name, (m, t) in states.items()})

    # ------------------------------------------------------------------ jobs

    async def add_job(self, job: Job) -> Job:
        if job.id in self._jobs:
            raise ValueError(f"job {job.id!r} already exists")
        self._seq += 1
        stored = job.model_copy(update={"seq": self._seq}, deep=True)
        self._jobs[job.id] = stored
        self._index(stored)
        return stored.model_copy(deep=True)

    async def add_job_once(self, job: Job, key: str, fresh_after: float) -> tuple[Job, bool]:
        held = self._jobs.get(self._idem.get(key, ""))
        if held is not None and held.created_at >= fresh_after:
            return held.model_copy(deep=True), False
        stored = await self.add_job(job)
        self._idem[key] = job.id
        return stored, True

    async def save_job(self, job: Job) -> None:
        old = self._jobs.get(job.id)
        if old is None:
            raise KeyError(job.id)
        self._unindex(old)
        stored = job.model_copy(update={"seq": old.seq}, deep=True)
        self._jobs[job.id] = stored
        self._index(stored)

    def _index(self, job: Job) -> None:
        if job.state is JobState.queued:
            bisect.insort(self._queued.setdefault(job.queue, []), (job.priority, job.seq, job.id))

    def _unindex(self, job: Job) -> None:
        if job.state is JobState.queued:
            keys = self._queued[job.queue]
            del keys[bisect.bisect_left(keys, (job.priority, job.seq, job.id))]

    async def spill_jobs(self, jobs: list[Job]) -> list[Job]:
        return []  # nothing outlives the process

    async def get_job(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job.model_copy(deep=True) if job is not None else None

    async def list_jobs(
        self,
        state: JobState | None = None,
        queue: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        before = parse_cursor(cursor)
        page: list[Job] = []
        for job in reversed(self._jobs.values()):
            if before is not None and job.seq >= before:
                continue
            matches = (state is None or job.state == state) and (queue is None or job.queue == queue)
            if matches and (owner is None or job.owner == owner):
                page.append(job.model_copy(deep=True))
                if len(page) > limit:
                    break
        more = len(page) > limit
        page = page[:limit]
        return JobPage(jobs=page, next_cursor=str(page[-1].seq) if more and page else None)

    async def claim_jobs(self, queue: str, limit: int, now: float, skip: Collection[str] = ()) -> list[Job]:
        chosen: list[Job] = []
        for _priority, _seq, job_id in self._queued.get(queue, ()):
            if len(chosen) >= limit:
                break
            job = self._jobs[job_id]
            if job_id not in skip and (job.not_before is None or job.not_before <= now):
                chosen.append(job.model_copy(deep=True))
        return chosen

    async def prune_jobs(self, finished_before: float | None, keep: int | None) -> list[str]:
        done = sorted(
            (j for j in self._jobs.values() if j.state in TERMINAL_STATES),
            key=lambda j: (j.finished_at or 0.0, j.seq),
            reverse=True,
        )
        doomed = [
            j.id
            for rank, j in enumerate(done)
            if (keep is not None and rank >= keep)
            or (finished_before is not None and j.finished_at is not None and j.finished_at < finished_before)
        ]
        for job_id in doomed:
            del self._jobs[job_id]
        if doomed and self._idem:
            self._idem = {key: job_id for key, job_id in self._idem.items() if job_id in self._jobs}
        return doomed

    # ----------------------------------------------------------------- audit

    async def add_audit(self, entry: AuditEntry) -> AuditEntry:
        stored = entry.model_copy(update={"id": len(self._audit) + 1})
        self._audit.append(stored)
        return stored

    async def list_audit(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        entries = [e for e in reversed(self._audit) if before_id is None or e.id < before_id]
        return entries[:limit]

    async def save_token(self, token: StoredToken, replace: bool = True) -> bool:
        if not replace and token.name in self._tokens:
            return False
        self._tokens[token.name] = token.model_copy()
        return True

    async def find_token(self, token_hash: str) -> StoredToken | None:
        return next((t for t in self._tokens.values() if t.token_hash == token_hash), None)

    async def list_tokens(self) -> list[StoredToken]:
        return sorted(self._tokens.values(), key=lambda t: t.created_at)

    async def delete_token(self, name: str) -> bool:
        return self._tokens.pop(name, None) is not None
