"""Host (psutil) and GPU (NVML) probes the service samples once a second."""

from __future__ import annotations

from .host import HostProbe
from .nvml import NvmlProbe


def default_probes() -> tuple[NvmlProbe, HostProbe]:
    """The probes a real service runs with; NVML absence is reported, not raised."""
    return NvmlProbe(), HostProbe()


__all__ = ["HostProbe", "NvmlProbe", "default_probes"]
