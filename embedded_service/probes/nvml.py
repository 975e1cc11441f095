"""GPU figures from NVML (`pynvml`, package nvidia-ml-py).

Admission needs real free memory and operators want to see which processes use
a GPU, so this probe reads each device's identity, memory, utilisation,
temperature and per-process memory. It never raises into the service: without
a driver or a GPU it reports no devices and a one-line reason, and a figure one
GPU cannot give is left None with `DeviceInfo.error` naming it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar

import pynvml

from ..model import DeviceHealth, DeviceInfo, GpuProcess

log = logging.getLogger("slotdeck.probes.nvml")

MIB = 1024 * 1024
DEFAULT_RETRY_AFTER_S = 30.0

T = TypeVar("T")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class NvmlProbe:
    """Blocking GPU probe; the service calls `sample()` in a worker thread.

    `nvml` is the module to use (the real `pynvml` by default; tests pass a
    stand-in with the same functions). NVML is initialised once and reused; if
    that fails (no driver yet) it is tried again after `retry_after_s`.
    """

    def __init__(self, nvml: Any = None, *, retry_after_s: float = DEFAULT_RETRY_AFTER_S) -> None:
        self._nvml = nvml if nvml is not None else pynvml
        self._retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._ready = False
        self._unavailable: str | None = None
        self._next_try = 0.0

    def sample(self) -> tuple[list[DeviceInfo], str | None]:
        """Devices seen now, and a one-line reason when none (or some figures) could be read."""
        with self._lock:
            if not self._ensure_init():
                return [], f"NVML unavailable: {self._unavailable}"
            try:
                count = self._nvml.nvmlDeviceGetCount()
            except self._nvml.NVMLError as exc:
                self._lose(exc)  # the driver went away: start over later
                return [], f"NVML unavailable: {self._unavailable}"
            devices = [self._read_device(index) for index in range(count)]
        if not devices:
            return [], "NVML found no GPU"
        problems = [f"GPU {d.index}: {d.error}" for d in devices if d.error]
        return devices, "; ".join(problems) or None

    def close(self) -> None:
        """Shut NVML down if this probe initialised it."""
        with self._lock:
            if self._ready:
                self._shutdown()

    def _ensure_init(self) -> bool:
        if self._ready:
            return True
        now = time.monotonic()
        if self._unavailable is not None and now < self._next_try:
            return False
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as exc:
            reason = _one_line(exc)
            if reason != self._unavailable:
                log.info("NVML unavailable (%s); GPU figures off, will retry every %.0f s", reason, self._retry_after_s)
            self._unavailable = reason
            self._next_try = now + self._retry_after_s
            return False
        if self._unavailable is not None:
            log.info("NVML available now")
        self._ready = True
        self._unavailable = None
        return True

    def _lose(self, exc: BaseException) -> None:
        self._unavailable = _one_line(exc)
        self._next_try = time.monotonic() + self._retry_after_s
        log.warning("NVML stopped answering (%s); will retry", self._unavailable)
        self._shutdown()

    def _shutdown(self) -> None:
        self._ready = False
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            log.debug("nvmlShutdown failed: %s", _one_line(exc))

    def _read_device(self, index: int) -> DeviceInfo:
        """One GPU's figures. `health` says what admission must know: 'lost' when NVML reports the GPU lost
        (any call), 'unified' when it has no memory figures to give (NOT_SUPPORTED), 'unreadable' when reading
        its memory failed otherwise; `per_process` is False when its process list could not be read."""
        nvml = self._nvml
        missing: list[str] = []
        failures: dict[str, BaseException] = {}

        def read(what: str, fn: Callable[[], T]) -> T | None:
            try:
                return fn()
            except nvml.NVMLError as exc:
                missing.append(f"{what} ({_one_line(exc)})")
                failures[what] = exc
                return None

        handle = read("device", lambda: nvml.nvmlDeviceGetHandleByIndex(index))
        if handle is None:
            lost = _is_lost(failures["device"])
            return DeviceInfo(
                index=index,
                source="nvml",
                error=f"unreachable: {missing[0]}",
                health="lost" if lost else "unreadable",
                health_reason=f"NVML: {missing[0]}",
            )
        name = read("name", lambda: _text(nvml.nvmlDeviceGetName(handle)))
        uuid = read("uuid", lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
        bus_id = read("pci_bus_id", lambda: _text(nvml.nvmlDeviceGetPciInfo(handle).busId))
        memory = read("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        utilization = read("utilization_pct", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        temperature = read("temperature_c", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        compute = read("compute processes", lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        graphics = read("graphics processes", lambda: nvml.nvmlDeviceGetGraphicsRunningProcesses(handle))
        health: DeviceHealth = "ok"
        reason: str | None = None
        lost_reads = [what for what, exc in failures.items() if _is_lost(exc)]
        if lost_reads:
            health, reason = "lost", f"NVML reports the GPU lost (reading {lost_reads[0]})"
        elif "memory" in failures:
            if isinstance(failures["memory"], pynvml.NVMLError_NotSupported):
                health, reason = "unified", "NVML gives no memory figures for this GPU (unified memory)"
            else:
                health, reason = "unreadable", "NVML: " + next(m for m in missing if m.startswith("memory"))
        return DeviceInfo(
            index=index,
            uuid=uuid,
            name=name or "GPU",
            pci_bus_id=bus_id,
            memory_total_mib=memory.total // MIB if memory is not None else None,
            memory_used_mib=memory.used // MIB if memory is not None else None,
            utilization_pct=float(utilization) if utilization is not None else None,
            temperature_c=float(temperature) if temperature is not None else None,
            processes=_processes([*(compute or []), *(graphics or [])]),
            per_process=compute is not None,
            source="nvml",
            error="missing " + ", ".join(missing) if missing else None,
            health=health,
            health_reason=reason,
        )


def _is_lost(exc: BaseException) -> bool:
    return isinstance(exc, pynvml.NVMLError_GpuIsLost) or getattr(exc, "value", None) == pynvml.NVML_ERROR_GPU_IS_LOST


def _processes(entries: Iterable[Any]) -> list[GpuProcess]:
    """One entry per pid: a process with both a compute and a graphics context is listed twice by NVML."""
    by_pid: dict[int, int | None] = {}
    for entry in entries:
        used = entry.usedGpuMemory // MIB if entry.usedGpuMemory is not None else None
        known = by_pid.get(entry.pid)
        by_pid[entry.pid] = used if known is None else max(known, used or 0)
    return [GpuProcess(pid=pid, used_mib=used) for pid, used in sorted(by_pid.items())]


def gpu_mem_used_mib(devices: Iterable[DeviceInfo], pids: Collection[int]) -> int | None:
    """Real GPU memory of these processes over all devices (a job's tree), or None if NVML shows none of them.

    Lets a job's actual use be shown next to what it reserved. Processes whose
    figure NVML withholds count as 0.
    """
    seen = False
    total = 0
    for device in devices:
        for process in device.processes:
            if process.pid in pids:
                seen = True
                total += process.used_mib or 0
    return total if seen else None
