"""The persistence seam. The service and the API talk to every backend through `Store`."""

from __future__ import annotations

from typing import Protocol

from ..model import AuditEntry, Marks, QueueConfig, StoredToken, Totals


class Store(Protocol):
    url: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # queues
    async def load_queues(self) -> list[QueueConfig]: ...

    async def save_queue(self, config: QueueConfig) -> None: ...

    async def delete_queue(self, name: str) -> None: ...

    async def load_queue_state(self) -> dict[str, tuple[Marks, Totals]]:
        """High-water marks and totals per queue, as last saved."""

    async def save_queue_state(self, states: dict[str, tuple[Marks, Totals]]) -> None: ...

    # audit log of operator actions
    async def add_audit(self, entry: AuditEntry) -> AuditEntry:
        """Append an entry; the returned copy carries its assigned increasing `id`."""

    async def list_audit(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        """Newest first."""

    # API tokens, hashed at rest
    async def save_token(self, token: StoredToken) -> None: ...

    async def find_token(self, token_hash: str) -> StoredToken | None: ...

    async def list_tokens(self) -> list[StoredToken]: ...

    async def delete_token(self, name: str) -> bool: ...
