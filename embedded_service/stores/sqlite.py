"""`sqlite:///path`: the embedded default. WAL, one batched writer thread, one reader thread.

Writes go through `BatchWriter` (a burst shares a transaction; each caller
returns after its commit). Reads run on a second connection in their own
thread, so a long listing never holds up a commit and the loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..model import AuditEntry, Job, JobPage, JobState, Marks, QueueConfig, StoredToken, Totals
from ..private import narrow, private_dir, private_file
from .base import TERMINAL_STATES, parse_cursor
from .faults import StoreHealth, as_fault, classify
from .spill import SpillFile
from .sqlite_restart import SqliteRestartMixin
from .sqlite_schema import migrate
from .sqlite_writer import BatchWriter, connect

T = TypeVar("T")
log = logging.getLogger("slotdeck.stores")

_TERMINAL = tuple(sorted(state.value for state in TERMINAL_STATES))
_TERMINAL_SQL = ", ".join("?" * len(_TERMINAL))


def path_from_url(url: str) -> Path:
    """`sqlite:///rel.db` is relative to the working directory, `sqlite:////abs/x.db` absolute."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"invalid SQLite store URL {url!r}: use sqlite:///relative.db or sqlite:////absolute/path.db")
    raw = url[len(prefix) :]
    if raw == ":memory:" or "?" in raw:
        raise ValueError(f"unsupported SQLite store URL {url!r}: name a database file (use memory:// for no file)")
    return Path(raw)


class StoreUnavailable(RuntimeError):
    """The database file cannot be opened (a directory, no permission, not a database)."""


def _cannot_open(path: str, exc: BaseException) -> str:
    cause = classify(exc)
    return f"cannot open SQLite store {path}: {cause + ': ' if cause else ''}{exc}"


def _job_from_row(seq: int, data: str) -> Job:
    job = Job.model_validate_json(data)
    job.seq = seq
    return job


def _update_job(c: sqlite3.Connection, job: Job) -> bool:
    """Replace a stored job's state; False when no such job is stored."""
    values = (job.state.value, job.owner, job.not_before, job.finished_at, job.model_dump_json(), job.id)
    cur = c.execute("UPDATE jobs SET state = ?, owner = ?, not_before = ?, finished_at = ?, data = ? WHERE id = ?", values)
    return cur.rowcount > 0


def _store_spilled(conn: sqlite3.Connection, spill: SpillFile) -> None:
    """At open: store the job states the previous service spilled at its close (see `stores.spill`), in one
    transaction, before anyone reads the jobs. `StoreUnavailable` when they cannot be stored (they stay kept)."""
    try:
        jobs = spill.pending()
    except (OSError, ValueError) as exc:
        raise StoreUnavailable(
            f"cannot read the job states kept in {spill.path}: {exc} (move it aside to start without them)"
        ) from exc
    if not jobs:
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        for job in jobs:
            _update_job(conn, job)  # a job no longer stored (pruned) has nothing to update
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                conn.execute("ROLLBACK")
        reason = classify(exc) or str(exc)
        raise StoreUnavailable(f"cannot store the {len(jobs)} job state(s) kept in {spill.path}: {reason}") from exc
    log.warning("stored %d job state(s) the previous service kept in %s", len(jobs), spill.path)


class SqliteStore(SqliteRestartMixin):
    def __init__(self, url: str, *, synchronous: str = "FULL") -> None:
        self.url = url
        self.path = path_from_url(url)
        if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self._synchronous = synchronous.upper()
        self._writer: BatchWriter | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self.health = StoreHealth()  # the last write's fate, failures counted per cause (see stores.faults)
        self.spill = SpillFile(self.path.with_name(self.path.name + "-spill"))  # outcomes a full disk refused

    @property
    def commits(self) -> int:
        """Transactions committed since open (writes per commit shows the batching)."""
        return self._writer.commits if self._writer is not None else 0

    def default_log_dir(self) -> Path | None:
        return self.path.parent / f"{self.path.name}-logs"

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            private_dir(self.path.parent, ours=False)
            private_file(self.path)  # SQLite gives its -wal and -shm files the database file's mode
            for journal in ("-wal", "-shm", "-journal"):
                narrow(self.path.with_name(self.path.name + journal))
        except OSError as exc:
            raise StoreUnavailable(_cannot_open(str(self.path), exc)) from exc
        path, sync, spill = str(self.path), self._synchronous, self.spill

        def open_writer() -> sqlite3.Connection:
            try:
                conn = connect(path, sync)
            except sqlite3.Error as exc:
                raise StoreUnavailable(_cannot_open(path, exc)) from exc
            try:
                migrate(conn)
                _store_spilled(conn, spill)
            except sqlite3.Error as exc:
                conn.close()
                raise StoreUnavailable(_cannot_open(path, exc)) from exc
            except BaseException:
                conn.close()
                raise
            return conn

        conn = await asyncio.to_thread(open_writer)
        self._writer = BatchWriter(conn, asyncio.get_running_loop(), self.health)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slotdeck-sqlite-reader")

        def open_reader() -> None:
            self._read_conn = connect(path, sync)
            self._read_conn.execute("PRAGMA query_only=ON")

        await asyncio.get_running_loop().run_in_executor(self._reader, open_reader)
        await asyncio.to_thread(self.spill.reserve)

    async def spill_jobs(self, jobs: list[Job]) -> list[Job]:
        try:
            return await asyncio.to_thread(self.spill.write, jobs)
        except OSError as exc:
            log.error("cannot keep %d job state(s) in %s: %s", len(jobs), self.spill.path, exc)
            return []

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._reader is not None:
            reader = self._reader
            self._reader = None
            conn = self._read_conn
            self._read_conn = None
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(reader, conn.close)
            reader.shutdown(wait=True)

    def _write(self, fn: Callable[[sqlite3.Connection], T], *, several_statements: bool = False) -> asyncio.Future[T]:
        if self._writer is None:
            raise RuntimeError(f"store {self.url} is not open")
        return self._writer.run(fn, several_statements=several_statements)

    async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._reader is None or self._read_conn is None:
            raise RuntimeError(f"store {self.url} is not open")
        conn = self._read_conn
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._reader, lambda: conn.execute(sql, params).fetchall()
            )
        except sqlite3.Error as exc:
            cause = classify(exc)
            if cause is not None:
                self.health.failed(cause, exc, "read")
            raise as_fault(exc) from exc

    # ---------------------------------------------------------------- queues

    async def load_queues(self) -> list[QueueConfig]:
        rows = await self._read("SELECT config FROM queues ORDER BY name")
        return [QueueConfig.model_validate_json(config) for (config,) in rows]

    async def save_queue(self, config: QueueConfig) -> None:
        data = config.model_dump_json()
        await self._write(
            lambda c: c.execute("INSERT OR REPLACE INTO queues (name, config) VALUES (?, ?)", (config.name, data))
        )

    async def delete_queue(self, name: str) -> None:
        def delete(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM queues WHERE name = ?", (name,))
            c.execute("DELETE FROM queue_state WHERE name = ?", (name,))

        await self._write(delete, several_statements=True)

    async def load_queue_state(self) -> dict[str, tuple[Marks, Totals]]:
        rows = await self._read("SELECT name, marks, totals FROM queue_state")
        return {name: (Marks.model_validate_json(m), Totals.model_validate_json(t)) for name, m, t in rows}

    async def save_queue_state(self, states: dict[str, tuple[Marks, Totals]]) -> None:
        rows = [(name, m.model_dump_json(), t.model_dump_json()) for name, (m, t) in states.items()]
        await self._write(
            lambda c: c.executemany("INSERT OR REPLACE INTO queue_state (name, marks, totals) VALUES (?, ?, ?)", rows)
        )

    # ------------------------------------------------------------------ jobs

    async def add_job(self, job: Job) -> Job:
        try:
            return await self._write(lambda c: _insert_job(c, job))
        except sqlite3.IntegrityError:
            raise ValueError(f"job {job.id!r} already exists") from None

    async def add_job_once(self, job: Job, key: str, fresh_after: float) -> tuple[Job, bool]:
        def insert_once(c: sqlite3.Connection) -> tuple[Job, bool]:
            row = c.execute("SELECT seq, data FROM jobs WHERE idem = ?", (key,)).fetchone()
            if row is not None:
                found = _job_from_row(*row)
                if found.created_at >= fresh_after:
                    return found, False
                c.execute("UPDATE jobs SET idem = NULL WHERE idem = ?", (key,))  # a day old: the key is free again
            return _insert_job(c, job, key), True

        try:
            # no savepoint needed: if the INSERT fails, at most a day-old key was let go, which is what it is for
            return await self._write(insert_once)
        except sqlite3.IntegrityError:
            raise ValueError(f"job {job.id!r} already exists") from None

    async def save_job(self, job: Job) -> None:
        def update(c: sqlite3.Connection) -> None:
            if not _update_job(c, job):
                raise KeyError(job.id)

        await self._write(update)

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._read("SELECT seq, data FROM jobs WHERE id = ?", (job_id,))
        return _job_from_row(*rows[0]) if rows else None

    async def list_jobs(
        self,
        state: JobState | None = None,
        queue: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        before = parse_cursor(cursor)
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("state", state.value if state else None), ("queue", queue), ("owner", owner)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            clauses.append("seq < ?")
            params.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._read(f"SELECT seq, data FROM jobs {where} ORDER BY seq DESC LIMIT ?", (*params, limit + 1))
        jobs = [_job_from_row(seq, data) for seq, data in rows[:limit]]
        return JobPage(jobs=jobs, next_cursor=str(jobs[-1].seq) if len(rows) > limit and jobs else None)

    async def claim_jobs(self, queue: str, limit: int, now: float, skip: Collection[str] = ()) -> list[Job]:
        rows = await self._read(
            "SELECT seq, id, data FROM jobs WHERE queue = ? AND state = 'queued'"
            " AND (not_before IS NULL OR not_before <= ?) ORDER BY priority, seq LIMIT ?",
            (queue, now, limit + len(skip)),
        )
        return [_job_from_row(seq, data) for seq, job_id, data in rows if job_id not in skip][:limit]

    async def prune_jobs(self, finished_before: float | None, keep: int | None) -> list[str]:
        def prune(c: sqlite3.Connection) -> list[str]:
            doomed: list[str] = []
            if finished_before is not None:
                doomed += [
                    row[0]
                    for row in c.execute(
                        f"DELETE FROM jobs WHERE state IN ({_TERMINAL_SQL}) AND finished_at < ? RETURNING id",
                        (*_TERMINAL, finished_before),
                    )
                ]
            if keep is not None:
                doomed += [
                    row[0]
                    for row in c.execute(
                        f"DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE state IN ({_TERMINAL_SQL})"
                        " ORDER BY finished_at DESC, seq DESC LIMIT -1 OFFSET ?) RETURNING id",
                        (*_TERMINAL, keep),
                    )
                ]
            return doomed

        return await self._write(prune, several_statements=True)

    # ----------------------------------------------------------------- audit

    async def add_audit(self, entry: AuditEntry) -> AuditEntry:
        data = json.dumps({"before": entry.before, "after": entry.after})

        def insert(c: sqlite3.Connection) -> AuditEntry:
            cur = c.execute(
                "INSERT INTO audit (at, actor, action, target, data) VALUES (?, ?, ?, ?, ?)",
                (entry.at, entry.actor, entry.action, entry.target, data),
            )
            return entry.model_copy(update={"id": cur.lastrowid})

        return await self._write(insert)

    async def list_audit(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        rows = await self._read(
            "SELECT id, at, actor, action, target, data FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before_id if before_id is not None else 2**62, limit),
        )
        return [
            AuditEntry(id=id_, at=at, actor=actor, action=action, target=target, **json.loads(data))
            for id_, at, actor, action, target, data in rows
        ]

    # ---------------------------------------------------------------- tokens

    async def save_token(self, token: StoredToken, replace: bool = True) -> bool:
        row = (token.name, token.token_hash, token.role.value, token.created_at)
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"  # the name is the primary key
        sql = f"{verb} INTO tokens (name, token_hash, role, created_at) VALUES (?, ?, ?, ?)"
        return bool(await self._write(lambda c: c.execute(sql, row).rowcount))

    async def find_token(self, token_hash: str) -> StoredToken | None:
        rows = await self._read("SELECT name, token_hash, role, created_at FROM tokens WHERE token_hash = ?", (token_hash,))
        return _token(*rows[0]) if rows else None

    async def list_tokens(self) -> list[StoredToken]:
        rows = await self._read("SELECT name, token_hash, role, created_at FROM tokens ORDER BY created_at")
        return [_token(*row) for row in rows]

    async def delete_token(self, name: str) -> bool:
        return await self._write(lambda c: c.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount > 0)


def _insert_job(c: sqlite3.Connection, job: Job, idem: str | None = None) -> Job:
    cur = c.execute(
        "INSERT INTO jobs (seq, id, queue, state, owner, priority, not_before, finished_at, data, idem)"
        " VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job.id,
            job.queue,
            job.state.value,
            job.owner,
            job.priority,
            job.not_before,
            job.finished_at,
            job.model_dump_json(),
            idem,
        ),
    )
    return job.model_copy(update={"seq": cur.lastrowid})


def _token(name: str, token_hash: str, role: str, created_at: float) -> StoredToken:
    return StoredToken.model_validate({"name": name, "token_hash": token_hash, "role": role, "created_at": created_at})
