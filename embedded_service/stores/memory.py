"""`memory://`: keeps everything in this process; for tests and throwaway services."""

from __future__ import annotations

from ..model import AuditEntry, Marks, QueueConfig, StoredToken, Totals


class MemoryStore:
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._queues: dict[str, QueueConfig] = {}
        self._queue_state: dict[str, tuple[Marks, Totals]] = {}
        self._audit: list[AuditEntry] = []
        self._tokens: dict[str, StoredToken] = {}

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

    async def add_audit(self, entry: AuditEntry) -> AuditEntry:
        stored = entry.model_copy(update={"id": len(self._audit) + 1})
        self._audit.append(stored)
        return stored

    async def list_audit(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        entries = [e for e in reversed(self._audit) if before_id is None or e.id < before_id]
        return entries[:limit]

    async def save_token(self, token: StoredToken) -> None:
        self._tokens[token.name] = token.model_copy()

    async def find_token(self, token_hash: str) -> StoredToken | None:
        return next((t for t in self._tokens.values() if t.token_hash == token_hash), None)

    async def list_tokens(self) -> list[StoredToken]:
        return sorted(self._tokens.values(), key=lambda t: t.created_at)

    async def delete_token(self, name: str) -> bool:
        return self._tokens.pop(name, None) is not None
