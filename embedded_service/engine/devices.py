"""GPU bookkeeping for admission: which devices a request fits on, and how far their figures can be trusted.

Free memory of a device (what admission can still promise) is

    total - foreign - sum over the leases on it of max(reserved, used by the lease's processes)

where `foreign` is memory used by processes that are not this service's jobs.
It is computed from NVML's per-process figures where NVML gives them:

- A job lease's processes are known (the job's process tree, also members that
  left its process group); what they use on this device is "used by the lease"
  (a job that has not allocated yet uses 0, so its whole reservation stays out
  of reach of newcomers, and others' memory still counts in full).
- Leases whose processes are unknown (`slot()` holders in this process,
  remote clients, task jobs running in the service's process) are assumed to
  use at most what they reserved of the memory not attributed to a job: that
  much of it is theirs, the rest is foreign.
- Where NVML lists no processes for the device (`per_process` False: not
  supported, or no permission) or withholds a job process's figure, that
  lease's use is unknown and it is treated like a lease whose processes are
  unknown. With no per-process figures at all this is `total - max(used,
  reserved)`: memory of other programs is then hidden by reservations that
  have not been allocated yet; the device card says so (`per_process`).
- Processes NVML lists whose pids this service cannot match (a container with
  its own pid namespace) count as foreign: safe, but it admits less.

Figures that cannot be read are never read as "unlimited" (`DeviceInfo.health`):

- `stale`: the last reading failed; the last good figures are used for
  `stale_after_s` seconds (default 10) counted from the last good reading.
- `unreadable`: after that, and while memory cannot be read, the device takes
  only work that asks for no memory (`gpu_mem_mib=0`).
- `lost`: NVML reports the GPU lost (fallen off the bus): no new work at all.
  Running leases keep their devices until released.
- `unified`: the device reports no memory size (integrated/unified memory,
  declared devices with `memory_total_mib=0`): memory requests are admitted
  only against `memory_budget_mib` (a service setting) and refused without one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import NoFittingDevice
from ..model import DeviceInfo, DeviceSpec
from .visible import DeviceSelection

log = logging.getLogger("slotdeck.engine.devices")

DEFAULT_STALE_AFTER_S = 10.0
_UNBOUNDED = 1 << 40


@dataclass(eq=False)
class DeviceState:
    info: DeviceInfo
    reservations: dict[str, int] = field(default_factory=dict)  # lease id -> MiB promised on this device
    per_queue: dict[str, int] = field(default_factory=dict)
    last_good: DeviceInfo | None = None  # the last reading with memory figures
    last_good_at: float | None = None
    health: str = "ok"
    reason: str | None = None
    accounting: tuple[int, int] | None = None  # (foreign, charged) until figures, leases or their processes change

    def __setattr__(self, name: str, value: object) -> None:
        if name == "info":
            object.__setattr__(self, "accounting", None)
        object.__setattr__(self, name, value)

    @property
    def reserved_mib(self) -> int:
        return sum(self.reservations.values())

    @property
    def leases(self) -> list[str]:
        return sorted(self.reservations)

    def health_at(self, now: float, stale_after_s: float) -> str:
        if self.health == "stale" and (self.last_good_at is None or now - self.last_good_at > stale_after_s):
            return "unreadable"
        return self.health


class DevicePool:
    """The GPUs admission can hand out, by index (NVML's index, which is the PCI bus order).

    `stale_after_s`: how long the last good figures stand in for a failed
    reading. `memory_budget_mib`: what a device of unknown size (unified
    memory) may promise in all; None refuses memory requests there.
    `selection`: only these devices are used (`CUDA_VISIBLE_DEVICES`, `--gpus`).
    """

    def __init__(
        self,
        *,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        memory_budget_mib: int | None = None,
        selection: DeviceSelection | None = None,
    ) -> None:
        self.devices: dict[int, DeviceState] = {}
        self.stale_after_s = stale_after_s
        self.memory_budget_mib = memory_budget_mib
        self.selection = selection
        self.selection_note: str | None = None
        self.lease_pids: dict[str, frozenset[int] | None] = {}  # lease id -> its processes (None: unknown)
        self._configured: dict[int, DeviceInfo] = {}
        self._hidden: set[int] = set()

    def __len__(self) -> int:
        return len(self.devices)

    # ---------------------------------------------------------------- figures

    def configure(self, specs: list[DeviceSpec]) -> None:
        """Devices declared by configuration; a probe's figures for the same index replace theirs."""
        for spec in specs:
            info = DeviceInfo(index=spec.index, name=spec.name, uuid=spec.uuid, memory_total_mib=spec.memory_total_mib)
            self._configured[spec.index] = info
        self._select(list(self._configured.values()))
        for info in self._configured.values():
            if info.index not in self._hidden:
                self._merge(info, now=None)

    def update(self, infos: list[DeviceInfo], now: float) -> None:
        """Take fresh probe figures; reservations and lease placement are kept.

        A probed device whose memory cannot be read, or that is missing from
        this reading, keeps its last good figures for `stale_after_s`.
        """
        self._select([*infos, *(c for c in self._configured.values() if c.index not in {i.index for i in infos})])
        seen = set()
        for info in infos:
            seen.add(info.index)
            if info.index not in self._hidden:
                self._merge(info, now)
        for index, state in self.devices.items():
            if index not in seen and state.info.source == "nvml" and state.health != "lost":
                self._memory_unknown(state, state.info, "the GPU probe did not list it", now)

    def read_failed(self, reason: str, now: float) -> None:
        """The probe could read no device at all: every probed device is as one whose memory read failed."""
        for state in self.devices.values():
            if state.info.source == "nvml" and state.health != "lost":
                self._memory_unknown(state, state.info.model_copy(update={"error": reason}), reason, now)

    def _select(self, infos: list[DeviceInfo]) -> None:
        if self.selection is None:
            return
        chosen, note = self.selection.choose(infos)
        if note != self.selection_note and "names no GPU" in note:
            log.warning("GPU selection %s", note)  # a typo here hides GPUs: say so once, not only in the status
        self.selection_note = note
        self._hidden = {info.index for info in infos if info.index not in chosen}
        for index in self._hidden:
            state = self.devices.get(index)
            if state is not None and not state.reservations:
                del self.devices[index]

    def _merge(self, info: DeviceInfo, now: float | None) -> None:
        state = self.devices.get(info.index)
        if state is None:
            state = self.devices[info.index] = DeviceState(info=info)
        if info.health == "lost":
            state.info = self._with_last_memory(state, info)
            state.health, state.reason = "lost", info.health_reason or info.error or "NVML reports the GPU lost"
        elif info.health == "unified" or (info.source != "nvml" and not info.memory_total_mib):
            state.info = info.model_copy(update={"memory_total_mib": None, "memory_used_mib": None})
            state.health = "unified"
            state.reason = info.health_reason or "the device reports no memory size (unified memory)"
        elif info.memory_total_mib is None or info.health == "unreadable":
            self._memory_unknown(state, info, info.health_reason or info.error or "memory figures missing", now)
        else:
            state.info, state.last_good, state.last_good_at = info, info, now
            state.health, state.reason = "ok", None

    def _memory_unknown(self, state: DeviceState, info: DeviceInfo, reason: str, now: float | None) -> None:
        state.info = self._with_last_memory(state, info)
        if state.last_good is not None and now is not None and state.last_good_at is not None:
            fresh = now - state.last_good_at <= self.stale_after_s
        else:
            fresh = False
        state.health = "stale" if fresh else "unreadable"
        state.reason = f"memory reading failed ({reason})"

    @staticmethod
    def _with_last_memory(state: DeviceState, info: DeviceInfo) -> DeviceInfo:
        good = state.last_good
        if good is None:
            return info
        keep = {"memory_total_mib", "memory_used_mib", "processes", "per_process"}
        return info.model_copy(update={name: getattr(good, name) for name in keep})

    # ------------------------------------------------------------------ memory

    def foreign_mib(self, state: DeviceState) -> int:
        """Memory on this device held by processes that are not this service's jobs (see the module doc)."""
        return self._accounting(state)[0]

    def _accounting(self, state: DeviceState) -> tuple[int, int]:
        """(foreign MiB, MiB charged to the leases on this device), in one pass over leases and processes."""
        if state.accounting is not None:
            return state.accounting
        info = state.info
        by_pid = {p.pid: p.used_mib for p in info.processes} if info.per_process else {}
        attributed = allowance = charged = 0
        for lease_id, reserved in state.reservations.items():
            use = self._lease_use(lease_id, by_pid, info.per_process)
            if use is None:
                allowance += reserved
                charged += reserved
            else:
                attributed += use
                charged += max(reserved, use)
        used = info.memory_used_mib or 0
        state.accounting = (max(0, max(0, used - attributed) - allowance), charged)
        return state.accounting

    def _lease_use(self, lease_id: str, by_pid: dict[int, int | None], per_process: bool) -> int | None:
        """What this lease's processes use on the device (MiB), or None when that cannot be known."""
        pids = self.lease_pids.get(lease_id)
        if pids is None or not per_process:
            return None
        total = 0
        for pid in pids if len(pids) <= len(by_pid) else [p for p in by_pid if p in pids]:
            if pid in by_pid:
                used = by_pid[pid]
                if used is None:
                    return None
                total += used
        return total

    def free_mib(self, state: DeviceState, now: float) -> int | None:
        """Memory admission can still promise on this device, or None when it takes no memory-bound work now."""
        health = state.health_at(now, self.stale_after_s)
        if health in ("lost", "unreadable"):
            return None
        if health == "unified":
            if self.memory_budget_mib is None:
                return None
            return self.memory_budget_mib - state.reserved_mib
        total = state.info.memory_total_mib
        if total is None:
            return None
        foreign, charged = self._accounting(state)
        return total - foreign - charged

    def set_lease_pids(self, lease_id: str, pids: frozenset[int] | None) -> None:
        if lease_id in self.lease_pids and self.lease_pids[lease_id] != pids:
            self.lease_pids[lease_id] = pids
            for state in self.devices.values():
                if lease_id in state.reservations:
                    state.accounting = None

    # --------------------------------------------------------------- admission

    def check_possible(self, gpus: int, gpu_mem_mib: int) -> None:
        """Refuse at once a request no device set of this host could ever satisfy (NoFittingDevice says why).

        ValueError for negative sizes (HTTP bodies are validated before; `slot()` callers are not).
        """
        if gpus < 0 or gpu_mem_mib < 0:
            raise ValueError(f"gpus and gpu_mem_mib must be >= 0, not gpus={gpus}, gpu_mem_mib={gpu_mem_mib}")
        if gpus == 0:
            return
        usable = [d for d in self.devices.values() if d.health != "lost"]
        if gpus > len(usable):
            lost = [f"GPU {i} lost ({d.reason})" for i, d in self.devices.items() if d.health == "lost"]
            if self.selection_note:
                lost.append(self.selection_note)  # the GPUs it hides are not this host's for SlotDeck
            detail = f"; {'; '.join(lost)}" if lost else ""
            raise NoFittingDevice(f"asked for {gpus} GPU(s), this host has {len(usable)} usable{detail}")
        if not gpu_mem_mib:
            return
        if sum(1 for d in usable if self._could_hold(d, gpu_mem_mib)) >= gpus:
            return
        unified = [d for d in usable if d.health == "unified"]
        if unified and self.memory_budget_mib is None:
            names = ", ".join(str(d.info.index) for d in unified)
            raise NoFittingDevice(
                f"asked for {gpu_mem_mib} MiB of GPU memory, but GPU {names} reports no memory size (unified memory); "
                "set a GPU memory budget (gpu_memory_budget_mib) to admit memory requests there"
            )
        raise NoFittingDevice(f"asked for {gpus} GPU(s) with {gpu_mem_mib} MiB each; too few devices that large")

    def possible_now(self, gpus: int, gpu_mem_mib: int) -> bool:
        """Whether the devices not lost could hold the request once emptied; False while a lost GPU is needed
        (a waiter that cannot fit for that reason must not hold back those behind it)."""
        usable = [d for d in self.devices.values() if d.health != "lost"]
        return sum(1 for d in usable if not gpu_mem_mib or self._could_hold(d, gpu_mem_mib)) >= gpus

    def _could_hold(self, state: DeviceState, gpu_mem_mib: int) -> bool:
        """Whether this device could ever give `gpu_mem_mib` (a size not read yet may turn out large enough)."""
        if state.health == "unified":
            return self.memory_budget_mib is not None and self.memory_budget_mib >= gpu_mem_mib
        total = state.info.memory_total_mib
        return total is None or total >= gpu_mem_mib

    def within_cap(self, gpus: int, queue: str, per_gpu: int | None) -> bool:
        """Whether enough devices are below this queue's per-GPU cap to place `gpus` at all."""
        if per_gpu is None:
            return True
        return sum(1 for state in self.devices.values() if state.per_queue.get(queue, 0) < per_gpu) >= gpus

    def fit(
        self, gpus: int, gpu_mem_mib: int, queue: str, per_gpu: int | None, placement: str = "pack", now: float = 0.0
    ) -> list[int] | None:
        """Pick devices for a request, or None when too few fit now.

        `pack`: best fit first (least free memory that suffices, keeping big
        holes for big requests). `spread`: emptiest first (fewest leases, then
        most free memory), so 1-GPU work uses every GPU before doubling up.
        """
        candidates: list[tuple[int, int, int]] = []
        for index, state in self.devices.items():
            if per_gpu is not None and state.per_queue.get(queue, 0) >= per_gpu:
                continue
            if state.health_at(now, self.stale_after_s) == "lost":
                continue
            free = self.free_mib(state, now)
            if gpu_mem_mib and (free is None or free < gpu_mem_mib):
                continue
            room = free if free is not None else _UNBOUNDED
            if placement == "spread":
                candidates.append((len(state.reservations), -room, index))
            else:
                candidates.append((room, 0, index))
        if len(candidates) < gpus:
            return None
        candidates.sort()
        return sorted(index for *_, index in candidates[:gpus])

    def assign(self, lease_id: str, queue: str, indices: list[int], gpu_mem_mib: int, tracked: bool = False) -> None:
        """Record a lease on its devices; `tracked`: its processes will be told (a job's), none yet."""
        self.lease_pids[lease_id] = frozenset() if tracked else None
        for index in indices:
            state = self.devices[index]
            state.reservations[lease_id] = gpu_mem_mib
            state.accounting = None
            state.per_queue[queue] = state.per_queue.get(queue, 0) + 1

    def unassign(self, lease_id: str, queue: str, indices: tuple[int, ...] | list[int], gpu_mem_mib: int) -> None:
        self.lease_pids.pop(lease_id, None)
        for index in indices:
            state = self.devices.get(index)
            if state is None or lease_id not in state.reservations:
                continue
            del state.reservations[lease_id]
            state.accounting = None
            state.per_queue[queue] -= 1

    # --------------------------------------------------------------- observing

    def infos(self, now: float) -> list[DeviceInfo]:
        result = []
        for _, state in sorted(self.devices.items()):
            health = state.health_at(now, self.stale_after_s)
            known = health in ("ok", "stale") and state.info.memory_total_mib is not None
            result.append(
                state.info.model_copy(
                    update={
                        "memory_reserved_mib": state.reserved_mib,
                        "leases": state.leases,
                        "health": health,
                        "health_reason": state.reason,
                        "memory_foreign_mib": self.foreign_mib(state) if known else None,
                        "memory_free_mib": self.free_mib(state, now),
                        "memory_budget_mib": self.memory_budget_mib if health == "unified" else None,
                    }
                )
            )
        return result

    def uuids(self, indices: tuple[int, ...] | list[int]) -> list[str] | None:
        """The UUIDs of these devices, or None when one of them has none known."""
        uuids = [self.devices[i].info.uuid if i in self.devices else None for i in indices]
        return None if any(u is None for u in uuids) else [u for u in uuids if u is not None]
