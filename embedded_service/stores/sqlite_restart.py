"""What a restart must not forget, for `SqliteStore`: remote leases, the fence high-water, operator overrides,
and the count of queued jobs per queue (the true backlog). A mixin, so these live apart from the job tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from ..model import HeldLease, Marks, QueueOverrides, Totals

T = TypeVar("T")

FENCE_KEY = "fence_reserved"


class SqliteRestartMixin:
    """Needs the host class's `_write(fn, several_statements=...)` and `_read(sql, params)`."""

    _write: Callable[..., Any]
    _read: Callable[..., Any]

    async def count_queued(self) -> dict[str, int]:
        """Queued jobs per queue (served by the claim index)."""
        rows = await self._read("SELECT queue, COUNT(*) FROM jobs WHERE state = 'queued' GROUP BY queue")
        return {queue: count for queue, count in rows}

    async def load_leases(self) -> list[HeldLease]:
        rows = await self._read("SELECT data FROM leases")
        return [HeldLease.model_validate_json(data) for (data,) in rows]

    async def save_leases(
        self, put: list[HeldLease], drop: list[str], states: dict[str, tuple[Marks, Totals]] | None = None
    ) -> None:
        """Store new remote leases, forget ended ones and save queue marks/totals, in one transaction."""
        put_rows = [(lease.id, lease.model_dump_json()) for lease in put]
        drop_rows = [(lease_id,) for lease_id in drop]
        state_rows = [(n, m.model_dump_json(), t.model_dump_json()) for n, (m, t) in (states or {}).items()]

        def write(c: sqlite3.Connection) -> None:
            if put_rows:
                c.executemany("INSERT OR REPLACE INTO leases (id, data) VALUES (?, ?)", put_rows)
            if drop_rows:
                c.executemany("DELETE FROM leases WHERE id = ?", drop_rows)
            if state_rows:
                c.executemany("INSERT OR REPLACE INTO queue_state (name, marks, totals) VALUES (?, ?, ?)", state_rows)

        await self._write(write, several_statements=True)

    async def load_fence(self) -> int:
        rows = await self._read("SELECT value FROM meta WHERE key = ?", (FENCE_KEY,))
        return int(rows[0][0]) if rows else 0

    async def save_fence(self, fence: int) -> None:
        """Record that fences up to `fence` may have been handed out (never lowers the stored value)."""
        await self._write(
            lambda c: c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value ="
                " CAST(MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
                (FENCE_KEY, str(fence)),
            )
        )

    async def load_overrides(self) -> dict[str, QueueOverrides]:
        rows = await self._read("SELECT name, data FROM queue_overrides")
        return {name: QueueOverrides.model_validate_json(data) for name, data in rows}

    async def save_overrides(self, name: str, record: QueueOverrides | None) -> None:
        """Store a queue's configured values and overrides (None: forget them, e.g. the queue was deleted)."""
        if record is None:
            await self._write(lambda c: c.execute("DELETE FROM queue_overrides WHERE name = ?", (name,)))
            return
        data = record.model_dump_json()
        await self._write(
            lambda c: c.execute("INSERT OR REPLACE INTO queue_overrides (name, data) VALUES (?, ?)", (name, data))
        )
