"""A stand-in for the `pynvml` module at the NVML boundary (this machine has no GPU).

It has the functions `NvmlProbe` calls and raises pynvml's real error classes,
so the probe's handling of NVML failures is exercised as it would be on a host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml

MIB = 1024 * 1024


@dataclass
class FakeGpu:
    name: str = "Fake H100"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    bus_id: bytes = b"00000000:01:00.0"  # ctypes char arrays come back as bytes
    total_mib: int = 16_000
    used_mib: int = 1_000
    utilization: int = 37
    temperature: int = 55
    compute: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes used or None)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    lost: bool = False
    unsupported: set[str] = field(default_factory=set)  # "temperature", "utilization", ...
    failing: set[str] = field(default_factory=set)  # reads that fail this time with NVML_ERROR_UNKNOWN


class FakeNvml:
    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(self, gpus: list[FakeGpu] | None = None, *, init_failures: int = 0) -> None:
        self.gpus = gpus if gpus is not None else []
        self.init_failures = init_failures
        self.init_calls = 0
        self.shutdown_calls = 0
        self.driver_gone = False

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_failures > 0:
            self.init_failures -= 1
            raise pynvml.NVMLError_DriverNotLoaded(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
        self.driver_gone = False

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self) -> int:
        if self.driver_gone:
            raise pynvml.NVMLError_Uninitialized(pynvml.NVML_ERROR_UNINITIALIZED)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        gpu = self.gpus[index]
        if gpu.lost:
            raise pynvml.NVMLError_GpuIsLost(pynvml.NVML_ERROR_GPU_IS_LOST)
        return gpu

    @staticmethod
    def _check(gpu: FakeGpu, what: str) -> None:
        if what in gpu.unsupported:
            raise pynvml.NVMLError_NotSupported(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if what in gpu.failing:
            raise pynvml.NVMLError_Unknown(pynvml.NVML_ERROR_UNKNOWN)

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        self._check(gpu, "name")
        return gpu.name

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        self._check(gpu, "uuid")
        return gpu.uuid

    def nvmlDeviceGetPciInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        self._check(gpu, "pci")
        return SimpleNamespace(busId=gpu.bus_id)

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        self._check(gpu, "memory")
        return SimpleNamespace(total=gpu.total_mib * MIB, used=gpu.used_mib * MIB, free=(gpu.total_mib - gpu.used_mib) * MIB)

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> SimpleNamespace:
        self._check(gpu, "utilization")
        return SimpleNamespace(gpu=gpu.utilization, memory=0)

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        self._check(gpu, "temperature")
        return gpu.temperature

    def nvmlDeviceGetComputeRunningProcesses(self, gpu: FakeGpu) -> list[SimpleNamespace]:
        self._check(gpu, "compute")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.compute]

    def nvmlDeviceGetGraphicsRunningProcesses(self, gpu: FakeGpu) -> list[SimpleNamespace]:
        self._check(gpu, "graphics")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.graphics]
