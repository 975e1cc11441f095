"""`memory://`: keeps everything in this process; for tests and throwaway services."""

from __future__ import annotations

from ..model import Marks, QueueConfig, Totals


class MemoryStore:
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._queues: dict[str, QueueConfig] = {}
        self._queue_state: dict[str, tuple[Marks, Totals]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
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
