"""What a running task job can learn about itself: `current_job()` inside a registered callable."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class JobContext:
    """The job a task callable runs for.

    `devices`: its granted GPUs as NVML indices (PCI bus order); `device_uuids`:
    the same GPUs' UUIDs where known (None otherwise). A task runs inside the
    service's process, so `CUDA_VISIBLE_DEVICES` cannot be set for it alone:
    pick the devices by UUID, or by index when the service's CUDA numbering is
    the PCI bus order (`CUDA_DEVICE_ORDER=PCI_BUS_ID`, no `CUDA_VISIBLE_DEVICES`).
    `gpu_mem_mib` is the memory reserved on each of them.
    """

    job_id: str
    devices: tuple[int, ...] = ()
    device_uuids: tuple[str, ...] | None = None
    gpu_mem_mib: int = 0


_current: ContextVar[JobContext | None] = ContextVar("slotdeck_current_job", default=None)


def current_job() -> JobContext | None:
    """The job this task callable runs for, or None outside a task job."""
    return _current.get()
