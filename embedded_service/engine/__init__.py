"""The admission core: pure asyncio, no I/O."""

from .clock import Clock, ManualClock, RealClock
from .core import Lease, SlotEngine
from .history import HistoryRing, Sample

__all__ = ["Clock", "HistoryRing", "Lease", "ManualClock", "RealClock", "Sample", "SlotEngine"]
