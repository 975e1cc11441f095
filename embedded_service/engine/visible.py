"""Which GPUs this service may hand out: `CUDA_VISIBLE_DEVICES` or `--gpus`, as CUDA reads them.

A selection is a comma-separated list of entries, each an index or a UUID
(`GPU-8932f937-...`, a unique prefix is enough, as CUDA accepts). Indices are
the NVML/PCI bus order, which is CUDA's order only under
`CUDA_DEVICE_ORDER=PCI_BUS_ID`: prefer UUIDs on hosts with different GPU models.
As in CUDA, the list ends at the first entry that names no device (`-1` hides
all of them); an empty selection hides every GPU. MIG instances (`MIG-...`)
are not devices SlotDeck schedules: they end the list like any unknown entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..model import DeviceInfo


@dataclass(frozen=True)
class DeviceSelection:
    """A parsed selection; `source` says where it came from (for messages), e.g. 'CUDA_VISIBLE_DEVICES=1'."""

    entries: tuple[str, ...]
    source: str

    @classmethod
    def parse(cls, text: str, source: str) -> DeviceSelection:
        return cls(tuple(part.strip() for part in text.split(",") if part.strip()), source)

    def choose(self, devices: Iterable[DeviceInfo]) -> tuple[set[int], str]:
        """The indices of the chosen devices among `devices`, and a one-line account of the choice."""
        known = list(devices)
        chosen: list[int] = []
        problem = ""
        for entry in self.entries:
            index = self._match(entry, known)
            if index is None:
                problem = f"; {entry!r} names no GPU here, it and what follows are ignored"
                break
            if index not in chosen:
                chosen.append(index)
        shown = ", ".join(str(i) for i in chosen) or "none"
        return set(chosen), f"{self.source}: GPUs {shown} of {len(known)}{problem}"

    @staticmethod
    def _match(entry: str, devices: list[DeviceInfo]) -> int | None:
        if entry.lstrip("-").isdigit():
            number = int(entry)
            return number if any(d.index == number for d in devices) else None
        lowered = entry.lower()
        if not lowered.startswith("gpu-"):
            return None
        hits = [d.index for d in devices if d.uuid and d.uuid.lower().startswith(lowered)]
        return hits[0] if len(hits) == 1 else None
