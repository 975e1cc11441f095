"""The probes inside a running SlotService: no GPU here, configured devices, NVML devices in admission."""

from __future__ import annotations

import asyncio

import pytest
from fake_nvml import FakeGpu, FakeNvml

from embedded_service.errors import SlotTimeout
from embedded_service.model import DeviceSpec
from embedded_service.probes import HostProbe, NvmlProbe, default_probes
from embedded_service.service import SlotService


async def wait_for_samples(svc: SlotService, count: int) -> None:
    start = len(svc.history(3600).t)
    async with asyncio.timeout(10):
        while len(svc.history(3600).t) < start + count:
            await asyncio.sleep(0.01)


def test_default_probes() -> None:
    gpu, host = default_probes()
    assert isinstance(gpu, NvmlProbe) and isinstance(host, HostProbe)


async def test_service_without_gpu_reports_reason_and_keeps_running(no_nvml_here: None) -> None:
    svc = SlotService(gpu_probe=NvmlProbe(), host_probe=HostProbe(), sample_interval_s=0.02)
    async with svc:
        svc.configure_queue("work", limit=1)
        await wait_for_samples(svc, 3)  # the sampler ticks on after NVML failed
        snap = svc.snapshot()
        assert snap.devices == []
        assert snap.gpu_probe == "NVML unavailable: NVML Shared Library Not Found"
        assert snap.host is not None
        assert snap.host.cpu_count is not None and snap.host.cpu_count >= 1
        assert snap.host.memory_total_mib and snap.host.memory_used_mib
        history = svc.history(60)
        assert history.host_memory_used_mib[-1] is not None
        async with svc.slot("work") as lease:  # admission unaffected
            assert lease.devices == ()


async def test_configured_devices_work_where_nvml_does_not(no_nvml_here: None) -> None:
    devices = [DeviceSpec(index=0, name="configured", memory_total_mib=8_000)]
    async with SlotService(devices=devices, gpu_probe=NvmlProbe(), sample_interval_s=0.02) as svc:
        svc.configure_queue("gpu", limit=2)
        await wait_for_samples(svc, 2)
        snap = svc.snapshot()
        assert [(d.index, d.name, d.source) for d in snap.devices] == [(0, "configured", "config")]
        assert snap.gpu_probe is not None and snap.gpu_probe.startswith("NVML unavailable: ")
        async with svc.slot("gpu", gpus=1, gpu_mem_mib=6_000) as lease:
            assert lease.devices == (0,)


async def test_nvml_figures_feed_admission() -> None:
    """Memory another process holds (seen by NVML) is out of reach of new leases."""
    nvml = FakeNvml([FakeGpu(total_mib=16_000, used_mib=15_000)])
    async with SlotService(gpu_probe=NvmlProbe(nvml=nvml), sample_interval_s=0.02) as svc:
        svc.configure_queue("gpu", limit=4)
        snap = svc.snapshot()
        assert [(d.name, d.source, d.memory_used_mib) for d in snap.devices] == [("Fake H100", "nvml", 15_000)]
        assert snap.gpu_probe is None
        with pytest.raises(SlotTimeout):
            await svc.acquire("gpu", gpus=1, gpu_mem_mib=2_000, timeout_s=0.2)
        async with svc.slot("gpu", gpus=1, gpu_mem_mib=500) as lease:
            assert lease.devices == (0,)
        nvml.gpus[0].used_mib = 1_000  # the other process freed its memory: the next sample says so
        await wait_for_samples(svc, 2)
        async with svc.slot("gpu", gpus=1, gpu_mem_mib=2_000, timeout_s=1) as lease:
            assert lease.devices == (0,)
