"""GPU admission replayed against public GPU-scheduler failure reports, with the NVML stand-in (real NVML errors).

Each test is one report: memory of other programs, a failed reading, a lost GPU, unified memory, the service's
visible devices (by index and by UUID), CUDA's device order in a job and spread against pack placement.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest
from fake_nvml import MIB, FakeGpu, FakeNvml

from embedded_service import NoFittingDevice, SlotService
from embedded_service.cli import show_status
from embedded_service.engine import Lease, ManualClock
from embedded_service.jobs import JobSettings
from embedded_service.model import DeviceInfo, DeviceSpec, JobState
from embedded_service.probes import NvmlProbe

QUICK = JobSettings(poll_s=0.05, kill_grace_s=1.0)
UUID_A = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
UUID_B = "GPU-bbbbbbbb-0000-0000-0000-000000000000"


def two_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(uuid=UUID_A, bus_id=b"00000000:01:00.0", used_mib=0),
            FakeGpu(uuid=UUID_B, bus_id=b"00000000:02:00.0", used_mib=0),
        ]
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def poll(predicate: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def device(svc: SlotService, index: int = 0) -> DeviceInfo:
    return next(d for d in svc.snapshot().devices if d.index == index)


def granted(tasks: list[asyncio.Task[Lease]]) -> int:
    return sum(1 for t in tasks if t.done() and not t.cancelled() and t.exception() is None)


async def test_memory_of_other_programs_keeps_counting_when_jobs_have_not_allocated_yet() -> None:
    """16,000 MiB GPU, 1,000 MiB held by a program SlotDeck did not start, limit 8, eight 4,000 MiB command jobs:
    three fit (3 x 4,000 + 1,000). Before, four were admitted: max(used, reserved) dropped the foreign 1,000 MiB."""
    nvml = FakeNvml([FakeGpu(total_mib=16_000, used_mib=1_000, compute=[(1, 1_000 * MIB)])])
    async with SlotService(gpu_probe=NvmlProbe(nvml=nvml), sample_interval_s=3600, jobs=QUICK) as svc:
        svc.configure_queue("gpu", limit=8)
        jobs = [await svc.submit_command(["sleep", "60"], queue="gpu", gpu_mem_mib=4_000) for _ in range(8)]
        await poll(lambda: len(svc.snapshot().leases) + len(svc.snapshot().waiters) == 8, "all eight jobs offered")
        snap = svc.snapshot()
        assert (len(snap.leases), len(snap.waiters)) == (3, 5)
        assert (device(svc).memory_foreign_mib, device(svc).memory_free_mib) == (1_000, 3_000)

        running_ids = [lease.job_id for lease in snap.leases]

        async def pids_known() -> bool:
            return all([(await svc.get_job(job_id)).pid for job_id in running_ids if job_id])

        await poll(pids_known, "the running jobs' pids")
        running = [await svc.get_job(job_id) for job_id in running_ids if job_id]
        assert all(j.state is JobState.running for j in running)
        # one job allocates 5,000 MiB, more than it reserved: it is charged what it uses, and it is not foreign
        nvml.gpus[0].compute.append((running[0].pid, 5_000 * MIB))
        nvml.gpus[0].used_mib = 6_000
        await svc.sample_once()
        await poll(lambda: device(svc).memory_free_mib == 2_000, "the job's own use counted as its own")
        assert device(svc).memory_foreign_mib == 1_000
        assert len(svc.snapshot().leases) == 3
        for job in jobs:
            await svc.cancel_job(job.id)


async def test_a_failed_reading_is_not_unlimited_memory() -> None:
    """16,000 MiB GPU, five 6,000 MiB waiters: two run. A failed memory reading keeps the last good figures for
    a while (still two), then the device takes no memory-bound work until it reads again. Before: all five."""
    clock = ManualClock()
    nvml = FakeNvml([FakeGpu(total_mib=16_000, used_mib=0)])
    async with SlotService(clock=clock, gpu_probe=NvmlProbe(nvml=nvml), sample_interval_s=3600) as svc:
        svc.configure_queue("q", limit=10)
        tasks = [asyncio.create_task(svc.acquire("q", gpu_mem_mib=6_000)) for _ in range(5)]
        await settle()
        assert granted(tasks) == 2

        nvml.gpus[0].failing = {"memory"}
        await svc.sample_once()
        await settle()
        assert granted(tasks) == 2
        assert (device(svc).health, device(svc).memory_total_mib) == ("stale", 16_000)
        assert "memory" in (device(svc).health_reason or "")

        clock.advance(11)  # past the 10 s the last good figures stand for
        await svc.sample_once()
        await settle()
        assert granted(tasks) == 2
        assert (device(svc).health, device(svc).memory_free_mib) == ("unreadable", None)
        assert "unreadable" in show_status(svc.snapshot())

        nvml.gpus[0].failing = set()  # it reads again: admission goes on from real figures
        await svc.sample_once()
        assert device(svc).health == "ok"
        svc.release(next(t for t in tasks if t.done()).result())
        await settle()
        assert granted(tasks) == 3
        for task in tasks:
            task.cancel()


async def test_the_whole_probe_failing_is_a_failed_reading_too() -> None:
    clock = ManualClock()
    nvml = FakeNvml([FakeGpu(total_mib=16_000, used_mib=0)])
    async with SlotService(clock=clock, gpu_probe=NvmlProbe(nvml=nvml), sample_interval_s=3600) as svc:
        svc.configure_queue("q", limit=10)
        nvml.driver_gone = True  # nvmlDeviceGetCount raises: no device read at all
        clock.advance(11)
        await svc.sample_once()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(svc.acquire("q", gpu_mem_mib=1_000), 0.2)
        assert device(svc).health == "unreadable"


async def test_a_lost_gpu_takes_no_new_work() -> None:
    nvml = two_gpus()
    async with SlotService(gpu_probe=NvmlProbe(nvml=nvml), sample_interval_s=3600) as svc:
        svc.configure_queue("q", limit=10)
        nvml.gpus[1].lost = True
        await svc.sample_once()
        with pytest.raises(NoFittingDevice, match="GPU 1 lost"):
            await svc.acquire("q", gpus=2)
        lost = device(svc, 1)
        assert lost.health == "lost" and "lost" in (lost.health_reason or "").lower()
        assert "lost" in show_status(svc.snapshot())
        first = await svc.acquire("q", gpus=1, gpu_mem_mib=10_000)
        assert first.devices == (0,)
        second = asyncio.create_task(svc.acquire("q", gpus=1, gpu_mem_mib=10_000))
        await settle()
        assert not second.done(), "the only place with room is the lost GPU"
        nvml.gpus[1].lost = False  # back (after a reset): it takes work again
        await svc.sample_once()
        await settle()
        assert second.result().devices == (1,)


async def test_unified_memory_admits_memory_only_against_a_budget() -> None:
    """NVML gives no memory figures (NOT_SUPPORTED, as on unified-memory GPUs): before, every request fit."""
    nvml = FakeNvml([FakeGpu(unsupported={"memory"})])
    async with SlotService(gpu_probe=NvmlProbe(nvml=nvml), sample_interval_s=3600) as svc:
        svc.configure_queue("q", limit=10)
        with pytest.raises(NoFittingDevice, match="unified memory"):
            await svc.acquire("q", gpu_mem_mib=1_000)
        assert device(svc).health == "unified"
        lease = await svc.acquire("q", gpus=1)  # no memory asked: allowed
        assert lease.devices == (0,)
    budget = SlotService(gpu_probe=NvmlProbe(nvml=nvml), gpu_memory_budget_mib=10_000, sample_interval_s=3600)
    async with budget as svc:
        svc.configure_queue("q", limit=10)
        tasks = [asyncio.create_task(svc.acquire("q", gpu_mem_mib=6_000)) for _ in range(3)]
        await settle()
        assert granted(tasks) == 1
        assert (device(svc).memory_budget_mib, device(svc).memory_free_mib) == (10_000, 4_000)
        for task in tasks:
            task.cancel()


async def job_env(svc: SlotService, **submit: object) -> dict[str, str]:
    """Run a command job that prints its CUDA variables; return them."""
    names = "('CUDA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER')"
    code = f"import os; [print(k + '=' + os.environ.get(k, '<unset>')) for k in {names}]"
    job = await svc.submit_command([sys.executable, "-c", code], **submit)  # type: ignore[arg-type]
    await poll(lambda: _finished(svc, job.id), "the job to finish")
    lines = (await svc.job_log(job.id)).splitlines()
    return dict(line.split("=", 1) for line in lines)


async def _finished(svc: SlotService, job_id: str) -> bool:
    return (await svc.get_job(job_id)).state.finished


async def test_cuda_visible_devices_of_the_service_restricts_by_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service started with CUDA_VISIBLE_DEVICES=1 on a 2-GPU host: only GPU 1 is handed out, by its UUID."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    async with SlotService(gpu_probe=NvmlProbe(nvml=two_gpus()), sample_interval_s=3600, jobs=QUICK) as svc:
        svc.configure_queue("default", limit=2)
        assert [d.index for d in svc.snapshot().devices] == [1]
        assert svc.snapshot().gpu_selection == "CUDA_VISIBLE_DEVICES=1: GPUs 1 of 2"
        env = await job_env(svc, gpus=1)
        assert env == {"CUDA_VISIBLE_DEVICES": UUID_B, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        with pytest.raises(NoFittingDevice):
            await svc.acquire("default", gpus=2)


async def test_visible_devices_by_uuid_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbbbbbb")
    async with SlotService(gpu_probe=NvmlProbe(nvml=two_gpus()), sample_interval_s=3600) as svc:
        svc.configure_queue("q", limit=2)
        assert [d.index for d in svc.snapshot().devices] == [1]
        assert (await svc.acquire("q", gpus=1)).devices == (1,)
    # the service's own setting (--gpus) wins over the inherited variable
    async with SlotService(gpu_probe=NvmlProbe(nvml=two_gpus()), visible_gpus=UUID_A, sample_interval_s=3600) as svc:
        assert [d.index for d in svc.snapshot().devices] == [0]
        assert svc.snapshot().gpu_selection == f"--gpus {UUID_A}: GPUs 0 of 2"


async def test_an_entry_naming_no_gpu_ends_the_list_as_in_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,0")
    async with SlotService(gpu_probe=NvmlProbe(nvml=two_gpus()), sample_interval_s=3600) as svc:
        assert [d.index for d in svc.snapshot().devices] == [1]
        assert "'7' names no GPU here" in (svc.snapshot().gpu_selection or "")


async def test_jobs_get_cudas_pci_bus_order_whatever_the_service_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    """An inherited CUDA_DEVICE_ORDER=FASTEST_FIRST would make CUDA's index 0 another card than NVML's index 0."""
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    devices = [DeviceSpec(index=0), DeviceSpec(index=1)]  # declared, no UUIDs: indices are passed
    async with SlotService(devices=devices, sample_interval_s=3600, jobs=QUICK) as svc:
        svc.configure_queue("default", limit=1)
        env = await job_env(svc, gpus=1, env={"CUDA_DEVICE_ORDER": "FASTEST_FIRST"})
        assert env == {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


@pytest.mark.parametrize(("placement", "expected"), [("spread", [0, 1, 0, 1]), ("pack", [0, 0, 0, 0])])
async def test_spread_and_pack(placement: str, expected: list[int]) -> None:
    """Two idle GPUs, limit 4, four 1-GPU requests: spread uses both GPUs; pack (the old behaviour) one."""
    async with SlotService(gpu_probe=NvmlProbe(nvml=two_gpus()), sample_interval_s=3600) as svc:
        svc.configure_queue("q", limit=4, **({} if placement == "spread" else {"placement": placement}))  # default
        leases = [await svc.acquire("q", gpus=1) for _ in range(4)]
        assert [lease.devices[0] for lease in leases] == expected
