"""The persistence seam. The service talks to every backend through `Store`."""

from __future__ import annotations

from typing import Protocol

from ..model import Marks, QueueConfig, Totals


class Store(Protocol):
    url: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def load_queues(self) -> list[QueueConfig]: ...

    async def save_queue(self, config: QueueConfig) -> None: ...

    async def delete_queue(self, name: str) -> None: ...

    async def load_queue_state(self) -> dict[str, tuple[Marks, Totals]]:
        """High-water marks and totals per queue, as last saved."""

    async def save_queue_state(self, states: dict[str, tuple[Marks, Totals]]) -> None: ...
