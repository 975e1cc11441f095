"""GPU bookkeeping for admission: which devices a request fits on.

Free memory of a device counts both what the probe sees in use and what running
leases were promised: `total - max(used_by_probe, reserved)`. A lease's real use
shows up in the probe's figure, so counting both in full would reserve it twice;
taking the larger of the two keeps promised-but-not-yet-allocated memory out of
reach of newcomers while other processes' memory still counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import NoFittingDevice
from ..model import DeviceInfo, DeviceSpec


@dataclass(eq=False)
class DeviceState:
    info: DeviceInfo
    reserved_mib: int = 0
    leases: set[str] = field(default_factory=set)
    per_queue: dict[str, int] = field(default_factory=dict)

    def free_mib(self) -> int | None:
        total = self.info.memory_total_mib
        if not total:
            return None  # memory unknown: only caps limit this device
        used = self.info.memory_used_mib or 0
        return total - max(used, self.reserved_mib)


class DevicePool:
    """The GPUs admission can hand out, by index."""

    def __init__(self) -> None:
        self.devices: dict[int, DeviceState] = {}

    def __len__(self) -> int:
        return len(self.devices)

    def configure(self, specs: list[DeviceSpec]) -> None:
        for spec in specs:
            self._merge(DeviceInfo(index=spec.index, name=spec.name, uuid=spec.uuid, memory_total_mib=spec.memory_total_mib))

    def update(self, infos: list[DeviceInfo]) -> None:
        """Take fresh probe figures; reservations and lease placement are kept."""
        for info in infos:
            self._merge(info)

    def _merge(self, info: DeviceInfo) -> None:
        state = self.devices.get(info.index)
        if state is None:
            self.devices[info.index] = DeviceState(info=info)
        else:
            state.info = info

    def check_possible(self, gpus: int, gpu_mem_mib: int) -> None:
        """Refuse at once a request no device set of this host could ever satisfy."""
        if gpus == 0:
            return
        if gpus > len(self.devices):
            raise NoFittingDevice(f"asked for {gpus} GPU(s), this host has {len(self.devices)}")
        if gpu_mem_mib:
            big_enough = [
                d for d in self.devices.values() if not d.info.memory_total_mib or d.info.memory_total_mib >= gpu_mem_mib
            ]
            if len(big_enough) < gpus:
                raise NoFittingDevice(f"asked for {gpus} GPU(s) with {gpu_mem_mib} MiB each; too few devices that large")

    def within_cap(self, gpus: int, queue: str, per_gpu: int | None) -> bool:
        """Whether enough devices are below this queue's per-GPU cap to place `gpus` at all."""
        if per_gpu is None:
            return True
        return sum(1 for state in self.devices.values() if state.per_queue.get(queue, 0) < per_gpu) >= gpus

    def fit(self, gpus: int, gpu_mem_mib: int, queue: str, per_gpu: int | None) -> list[int] | None:
        """Pick devices for a request, best fit first (least free memory that suffices), or None."""
        candidates: list[tuple[int, int]] = []
        for index, state in self.devices.items():
            if per_gpu is not None and state.per_queue.get(queue, 0) >= per_gpu:
                continue
            free = state.free_mib()
            if free is not None and free < gpu_mem_mib:
                continue
            candidates.append((free if free is not None else 1 << 40, index))
        if len(candidates) < gpus:
            return None
        candidates.sort()
        return sorted(index for _, index in candidates[:gpus])

    def assign(self, lease_id: str, queue: str, indices: list[int], gpu_mem_mib: int) -> None:
        for index in indices:
            state = self.devices[index]
            state.reserved_mib += gpu_mem_mib
            state.leases.add(lease_id)
            state.per_queue[queue] = state.per_queue.get(queue, 0) + 1

    def unassign(self, lease_id: str, queue: str, indices: tuple[int, ...] | list[int], gpu_mem_mib: int) -> None:
        for index in indices:
            state = self.devices.get(index)
            if state is None or lease_id not in state.leases:
                continue
            state.reserved_mib -= gpu_mem_mib
            state.leases.discard(lease_id)
            state.per_queue[queue] -= 1

    def infos(self) -> list[DeviceInfo]:
        return [
            state.info.model_copy(update={"memory_reserved_mib": state.reserved_mib, "leases": sorted(state.leases)})
            for _, state in sorted(self.devices.items())
        ]
