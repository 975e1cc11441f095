"""The restart-related part of `MemoryStore` (leases, fence high-water, overrides, queued counts).

A memory store forgets everything with its process, so this matters for a service object that is
closed and started again on the same store, and for the store contract tests."""

from __future__ import annotations

from ..model import HeldLease, Job, Marks, QueueOverrides, Totals


class MemoryRestartMixin:
    _queued: dict[str, list[tuple[int, int, str]]]
    _queue_state: dict[str, tuple[Marks, Totals]]
    _jobs: dict[str, Job]

    def _restart_init(self) -> None:
        self._leases: dict[str, HeldLease] = {}
        self._fence = 0
        self._overrides: dict[str, QueueOverrides] = {}

    async def count_queued(self) -> dict[str, int]:
        return {queue: len(keys) for queue, keys in self._queued.items() if keys}

    async def load_leases(self) -> list[HeldLease]:
        return [lease.model_copy() for lease in self._leases.values()]

    async def save_leases(
        self, put: list[HeldLease], drop: list[str], states: dict[str, tuple[Marks, Totals]] | None = None
    ) -> None:
        for lease in put:
            self._leases[lease.id] = lease.model_copy()
        for lease_id in drop:
            self._leases.pop(lease_id, None)
        for name, (m, t) in (states or {}).items():
            self._queue_state[name] = (m.model_copy(), t.model_copy())

    async def load_fence(self) -> int:
        return self._fence

    async def save_fence(self, fence: int) -> None:
        self._fence = max(self._fence, fence)

    async def load_overrides(self) -> dict[str, QueueOverrides]:
        return {name: record.model_copy(deep=True) for name, record in self._overrides.items()}

    async def save_overrides(self, name: str, record: QueueOverrides | None) -> None:
        if record is None:
            self._overrides.pop(name, None)
        else:
            self._overrides[name] = record.model_copy(deep=True)
