"""Persistence backends, chosen by URL."""

from __future__ import annotations

from .base import Store
from .memory import MemoryStore


def open_store(url: str) -> Store:
    """Build the store a URL names: `memory://` (more schemes join as backends land)."""
    if url.startswith("memory://"):
        return MemoryStore(url)
    raise ValueError(f"unsupported store URL {url!r}: use memory://")


__all__ = ["MemoryStore", "Store", "open_store"]
