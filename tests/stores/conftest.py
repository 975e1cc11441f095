"""Every store backend runs the same contract tests; a new backend adds one `StoreKind` here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from embedded_service.stores import MemoryStore, SqliteStore, Store


@dataclass(frozen=True)
class StoreKind:
    name: str
    durable: bool  # whether a second store built on the same location sees the first one's data
    make: Callable[[Path], Store]


KINDS = [
    StoreKind("memory", False, lambda _where: MemoryStore()),
    StoreKind("sqlite", True, lambda where: SqliteStore(f"sqlite:///{where}/store.db")),
]


@pytest.fixture(params=KINDS, ids=lambda kind: kind.name)
def kind(request: pytest.FixtureRequest) -> StoreKind:
    return request.param


@pytest.fixture
async def store(kind: StoreKind, tmp_path: Path) -> AsyncIterator[Store]:
    opened = kind.make(tmp_path)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def reopen(kind: StoreKind, tmp_path: Path) -> AsyncIterator[Callable[[Store], Awaitable[Store]]]:
    """Close a store and open a fresh one on the same location (durable backends only)."""
    if not kind.durable:
        pytest.skip(f"{kind.name} keeps nothing across a restart")
    opened: list[Store] = []

    async def again(old: Store) -> Store:
        await old.close()
        fresh = kind.make(tmp_path)
        await fresh.open()
        opened.append(fresh)
        return fresh

    yield again
    for fresh in opened:
        await fresh.close()
