"""The service's sampling loop: a slow probe never stalls the event loop, a failing one never takes the service down."""

from __future__ import annotations

import asyncio
import threading
import time

from embedded_service.model import DeviceInfo, HostInfo
from embedded_service.service import SlotService


class SlowGpuProbe:
    """A driver call that blocks its thread for `seconds` (as a hung NVML call can)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.threads: set[int] = set()

    def sample(self) -> tuple[list[DeviceInfo], str | None]:
        self.calls += 1
        self.threads.add(threading.get_ident())
        time.sleep(self.seconds)
        return [DeviceInfo(index=0, name="slow", memory_total_mib=8_000, memory_used_mib=0, source="nvml")], None


class BrokenProbe:
    def sample(self) -> HostInfo:
        raise RuntimeError("boom")


async def test_a_slow_probe_does_not_stall_the_event_loop() -> None:
    probe = SlowGpuProbe(seconds=1.0)
    async with SlotService(gpu_probe=probe, sample_interval_s=0.01) as svc:
        svc.configure_queue("gpu", limit=1)
        calls_before = probe.calls
        worst, last = 0.0, time.perf_counter()
        for _ in range(250):  # about 2.5 s of 10 ms ticks, across at least two slow samples
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            worst, last = max(worst, now - last), now
        assert probe.calls >= calls_before + 2, "the sampler kept sampling"
        assert threading.get_ident() not in probe.threads, "probes are read off the event loop's thread"
        assert worst < 0.5, f"the event loop stalled {worst:.2f} s while a 1 s probe call ran"
        async with svc.slot("gpu", gpus=1, gpu_mem_mib=1_000, timeout_s=1) as lease:  # its devices reach admission
            assert lease.devices == (0,)


async def test_a_failing_probe_is_reported_and_the_service_keeps_running() -> None:
    async with SlotService(gpu_probe=BrokenProbe(), host_probe=BrokenProbe(), sample_interval_s=0.02) as svc:  # type: ignore[arg-type]
        svc.configure_queue("work", limit=1)
        start = len(svc.history(3600).t)
        async with asyncio.timeout(10):
            while len(svc.history(3600).t) < start + 3:  # the sampler ticks on after failures
                await asyncio.sleep(0.01)
        snap = svc.snapshot()
        assert snap.devices == [] and snap.gpu_probe == "GPU probe failed: boom"
        assert snap.host is None
        async with svc.slot("work", timeout_s=1) as lease:
            assert lease.devices == ()
