"""Task jobs (registered callables) ask for GPUs like commands and learn their devices from `current_job()`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from jobhelpers import wait_job, wait_until

from embedded_service import NoFittingDevice, SlotService, current_job
from embedded_service.jobs import JobSettings
from embedded_service.model import DeviceSpec, JobState

DEVICES = [
    DeviceSpec(index=0, uuid="GPU-0000", memory_total_mib=16_000),
    DeviceSpec(index=1, uuid="GPU-1111", memory_total_mib=16_000),
]


@pytest.fixture
async def svc() -> AsyncIterator[SlotService]:
    service = SlotService(devices=DEVICES, jobs=JobSettings(poll_s=0.05, kill_grace_s=1.0))
    service.configure_queue("gpu", limit=8)
    async with service:
        yield service


async def test_tasks_learn_their_devices_async_and_sync(svc: SlotService) -> None:
    @svc.task("async-devices", queue="gpu")
    async def async_devices() -> dict[str, object]:
        job = current_job()
        assert job is not None
        return {"id": job.job_id, "devices": list(job.devices), "uuids": list(job.device_uuids or ())}

    @svc.task("sync-devices", queue="gpu")
    def sync_devices() -> dict[str, object]:  # runs in a worker thread: the job is still known there
        job = current_job()
        assert job is not None
        return {"id": job.job_id, "devices": list(job.devices), "mem": job.gpu_mem_mib}

    first = await svc.submit("async-devices", gpus=2)
    second = await svc.submit("sync-devices", gpu_mem_mib=4_000)
    done = await wait_job(svc, first.id)
    assert done.result == {"id": first.id, "devices": [0, 1], "uuids": ["GPU-0000", "GPU-1111"]}
    assert done.devices == [0, 1]
    other = await wait_job(svc, second.id)
    assert (other.gpus, other.result["mem"], len(other.result["devices"])) == (1, 4_000, 1)
    assert current_job() is None


async def test_task_gpu_memory_is_admitted_like_any_lease(svc: SlotService) -> None:
    release = asyncio.Event()

    @svc.task("hold", queue="gpu")
    async def hold() -> list[int]:
        await release.wait()
        job = current_job()
        assert job is not None
        return list(job.devices)

    jobs = [await svc.submit("hold", gpu_mem_mib=10_000) for _ in range(3)]
    await wait_until(lambda: len(svc.snapshot().leases) == 2 and len(svc.snapshot().waiters) == 1, what="2 run")
    assert sorted(lease.devices[0] for lease in svc.snapshot().leases) == [0, 1]  # 10,000 + 10,000 > 16,000
    release.set()
    results = [await wait_job(svc, job.id) for job in jobs]
    assert [r.state for r in results] == [JobState.succeeded] * 3
    with pytest.raises(NoFittingDevice):
        await svc.submit("hold", gpu_mem_mib=20_000)
