"""GPU admission under an operator's attacks (NVML stand-in): waiters a lost GPU made impossible, and requests
with negative sizes through the library API (HTTP already refuses them)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fake_nvml import FakeGpu, FakeNvml

from embedded_service import NoFittingDevice, SlotService
from embedded_service.engine import Lease
from embedded_service.model import DeviceSpec
from embedded_service.probes import NvmlProbe


def two_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(uuid="GPU-aaaaaaaa-0000-0000-0000-000000000000", bus_id=b"00000000:01:00.0", used_mib=0),
            FakeGpu(uuid="GPU-bbbbbbbb-0000-0000-0000-000000000000", bus_id=b"00000000:02:00.0", used_mib=0),
        ]
    )


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def result(task: asyncio.Task[Lease]) -> Lease | None:
    return task.result() if task.done() and not task.cancelled() and task.exception() is None else None


async def test_a_waiter_that_a_lost_gpu_made_impossible_does_not_hold_back_the_ones_that_fit() -> None:
    """Two 16,000 MiB GPUs; a 2-GPU request of queue `train` waits for memory on GPU 0; then GPU 1 is lost. The
    2-GPU request cannot be placed until GPU 1 is back, so it must not hold its place across queues: a 1-GPU
    request of queue `infer` that fits GPU 0 runs. Before, it waited behind the impossible one for ever (a command
    job has no wait timeout). Within one queue grants stay in order."""
    nvml = two_gpus()
    async with SlotService(gpu_probe=NvmlProbe(nvml=nvml), sample_interval_s=3600) as svc:
        svc.configure_queue("train", limit=10)
        svc.configure_queue("infer", limit=10)
        first = await svc.acquire("infer", gpus=1, gpu_mem_mib=12_000)
        assert first.devices == (0,)
        big = asyncio.create_task(svc.acquire("train", gpus=2, gpu_mem_mib=8_000, timeout_s=600))
        await settle()
        assert not big.done()
        nvml.gpus[1].lost = True
        await svc.sample_once()
        svc.release(first)
        small = asyncio.create_task(svc.acquire("infer", gpus=1, gpu_mem_mib=1_000, timeout_s=600))
        await settle()
        lease = result(small)
        assert lease is not None and lease.devices == (0,), "a request that fits GPU 0 waits behind an impossible one"
        assert not big.done(), "the 2-GPU request keeps waiting for the lost GPU to come back"
        svc.release(lease)
        nvml.gpus[1].lost = False  # back after a reset: the 2-GPU request goes first again
        await svc.sample_once()
        await settle()
        placed = result(big)
        assert placed is not None and placed.devices == (0, 1)
        svc.release(placed)


async def test_a_big_request_that_can_still_fit_keeps_holding_its_place() -> None:
    """The rule the change above must keep: a request that merely waits for memory reserves,
    small ones of other queues wait."""
    nvml = two_gpus()
    async with SlotService(gpu_probe=NvmlProbe(nvml=nvml), sample_interval_s=3600) as svc:
        svc.configure_queue("train", limit=10)
        svc.configure_queue("infer", limit=10)
        held = await svc.acquire("infer", gpus=1, gpu_mem_mib=12_000)
        big = asyncio.create_task(svc.acquire("train", gpus=2, gpu_mem_mib=8_000, timeout_s=600))
        small = asyncio.create_task(svc.acquire("infer", gpus=1, gpu_mem_mib=1_000, timeout_s=600))
        await settle()
        assert not big.done() and not small.done()
        svc.release(held)
        await settle()
        placed = result(big)
        assert placed is not None and placed.devices == (0, 1)
        svc.release(placed)
        await settle()
        assert small.done()
        svc.release(small.result())


@pytest.mark.parametrize(("gpus", "gpu_mem_mib"), [(-1, 0), (0, -8_000), (1, -1)])
async def test_negative_gpu_requests_are_refused_by_the_library_too(gpus: int, gpu_mem_mib: int) -> None:
    """A negative reservation (`slot()`/`acquire()` are not validated like HTTP bodies) counted as memory given
    back: others were then admitted into memory that is not there."""
    nvml = FakeNvml([FakeGpu(total_mib=16_000, used_mib=0)])
    async with SlotService(gpu_probe=NvmlProbe(nvml=nvml), sample_interval_s=3600) as svc:
        svc.configure_queue("q", limit=10)
        with pytest.raises(ValueError, match="gpus and gpu_mem_mib must be >= 0"):
            await asyncio.wait_for(svc.acquire("q", gpus=gpus, gpu_mem_mib=gpu_mem_mib), 5)
        with pytest.raises(ValueError, match="gpus and gpu_mem_mib must be >= 0"):
            async with svc.slot("q", gpus=gpus, gpu_mem_mib=gpu_mem_mib):
                pass
        assert svc.snapshot().leases == [] and svc.snapshot().waiters == []
        assert next(d for d in svc.snapshot().devices if d.index == 0).memory_free_mib == 16_000


async def test_a_selection_that_hides_every_gpu_is_named_in_the_refusal_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`slotdeck serve --gpus "0;1"` (a typo for 0,1) on a 2-GPU host hides both GPUs. Before, the server said
    nothing at start and a GPU request was refused with "this host has 0 usable", as if it had no GPUs."""
    caplog.set_level(logging.WARNING, logger="slotdeck.engine.devices")
    specs = [DeviceSpec(index=0, memory_total_mib=16_000), DeviceSpec(index=1, memory_total_mib=16_000)]
    async with SlotService(devices=specs, visible_gpus="0;1", sample_interval_s=3600) as svc:
        svc.configure_queue("q", limit=10)
        with pytest.raises(NoFittingDevice, match=r"0 usable.*--gpus 0;1: GPUs none of 2; '0;1' names no GPU"):
            await svc.acquire("q", gpus=1)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("'0;1' names no GPU" in message for message in warnings), warnings
        assert len(warnings) == 1, "said once, not at every reading"
        await svc.sample_once()
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


async def test_the_leases_table_names_the_gpus_a_lease_holds_not_a_count() -> None:
    """`slotdeck leases` headed the GPUs a lease holds `GPUS`, as the waiters table heads the number it asks
    for: a lease on GPU 0 read "GPUS 0", as if it held none."""
    from embedded_service.cli import table
    from embedded_service.cli_work import show_leases

    specs = [DeviceSpec(index=0, memory_total_mib=16_000), DeviceSpec(index=1, memory_total_mib=16_000)]
    async with SlotService(devices=specs, sample_interval_s=3600) as svc:
        svc.configure_queue("q", limit=10)
        lease = await svc.acquire("q", gpus=1, gpu_mem_mib=1_000)
        assert lease.devices == (0,)
        header, row = show_leases(svc.snapshot(), None, table).splitlines()[:2]
        columns = header.split()
        assert "GPUS" not in columns and "DEVICES" in columns
        assert row.split()[columns.index("DEVICES")] == "0"
        svc.release(lease)
