"""Fixtures for the admission engine tests: a manual clock and a started service on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from embedded_service import SlotService
from embedded_service.engine import ManualClock
from embedded_service.model import DeviceSpec, QueueStats


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def svc(clock: ManualClock) -> AsyncIterator[SlotService]:
    """A started in-memory service whose time moves only through `clock.advance()`."""
    async with SlotService(clock=clock, sample_interval_s=3600) as service:
        yield service


@pytest.fixture
async def gpu_svc(clock: ManualClock) -> AsyncIterator[SlotService]:
    """Two 16 GiB GPUs from configuration (no probe), on the manual clock."""
    devices = [DeviceSpec(index=0, memory_total_mib=16_384), DeviceSpec(index=1, memory_total_mib=16_384)]
    async with SlotService(clock=clock, devices=devices, sample_interval_s=3600) as service:
        yield service


async def _settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


@pytest.fixture
def settle() -> Callable[..., Awaitable[None]]:
    """Let every ready task run (a few loop iterations, no real waiting)."""
    return _settle


@pytest.fixture
def stats(svc: SlotService) -> Callable[[str], QueueStats]:
    """The live stats of one queue, as a snapshot shows them."""

    def get(name: str) -> QueueStats:
        return next(q for q in svc.snapshot().queues if q.config.name == name)

    return get
