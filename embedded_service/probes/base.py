"""What the service expects of a probe: a blocking `sample()` it runs in a thread."""

from __future__ import annotations

from typing import Protocol

from ..model import DeviceInfo, HostInfo


class GpuProbe(Protocol):
    def sample(self) -> tuple[list[DeviceInfo], str | None]:
        """Devices seen now, and a one-line reason when none (or some figures) could be read."""


class HostProbe(Protocol):
    def sample(self) -> HostInfo: ...
