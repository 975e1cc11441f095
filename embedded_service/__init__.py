"""SlotDeck's embedded service: named queues with slots, priority waiting,
leases, GPU-aware admission, durable jobs and live state."""

from .blocking import BlockingSlotService
from .engine import Lease, ManualClock
from .errors import (
    LeaseGone,
    NoFittingDevice,
    QueueBusy,
    QueueFull,
    SlotCancelled,
    SlotDeckError,
    SlotTimeout,
    UnknownJob,
    UnknownQueue,
    UnknownTask,
    UnknownWaiter,
)
from .jobs.context import JobContext, current_job
from .service import SlotService

__version__ = "0.1.0"

__all__ = [
    "BlockingSlotService",
    "JobContext",
    "Lease",
    "LeaseGone",
    "ManualClock",
    "NoFittingDevice",
    "QueueBusy",
    "QueueFull",
    "SlotCancelled",
    "SlotDeckError",
    "SlotService",
    "SlotTimeout",
    "UnknownJob",
    "UnknownQueue",
    "UnknownTask",
    "UnknownWaiter",
    "__version__",
    "current_job",
]
