"""Persistence backends, chosen by URL."""

from __future__ import annotations

from .base import TERMINAL_STATES, Store
from .memory import MemoryStore
from .sqlite import SqliteStore


def open_store(url: str) -> Store:
    """Build the store a URL names: `memory://` or `sqlite:///path/to.db` (Redis joins with its own backend)."""
    if url.startswith("memory://"):
        return MemoryStore(url)
    if url.startswith("sqlite:"):
        return SqliteStore(url)
    raise ValueError(
        f"unsupported store URL {url!r}: use memory:// or sqlite:///path/to.db "
        "(redis://host:port/db?namespace=name is for SlotService and serve: admission on Redis, no store)"
    )


__all__ = ["TERMINAL_STATES", "MemoryStore", "SqliteStore", "Store", "open_store"]
