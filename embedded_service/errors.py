"""Errors raised by the service and, with the same types, by the remote client.

Kept free of imports so that every layer (engine, API, client, desktop) can
share them without breaking the one-way dependency rule.
"""

from __future__ import annotations


class SlotDeckError(Exception):
    """Base of every error SlotDeck raises on purpose."""


class UnknownQueue(SlotDeckError, KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown queue {self.name!r}"


class QueueFull(SlotDeckError):
    """Raised at once when a queue already has `max_waiting` waiters."""

    def __init__(self, queue: str, waiting: int, est_wait_s: float | None = None) -> None:
        super().__init__(f"queue {queue!r} is full: {waiting} already waiting")
        self.queue = queue
        self.waiting = waiting
        self.est_wait_s = est_wait_s


class SlotTimeout(SlotDeckError, TimeoutError):
    """The wait for a slot ran past its timeout; carries how long it waited."""

    def __init__(self, queue: str, waited_s: float, est_wait_s: float | None = None) -> None:
        super().__init__(f"no slot in queue {queue!r} after waiting {waited_s:.1f}s")
        self.queue = queue
        self.waited_s = waited_s
        self.est_wait_s = est_wait_s


class SlotCancelled(SlotDeckError):
    """A waiter was cancelled by an operator (or its queue was deleted)."""

    def __init__(self, queue: str, reason: str = "cancelled by operator") -> None:
        super().__init__(f"wait in queue {queue!r} ended: {reason}")
        self.queue = queue
        self.reason = reason


class LeaseGone(SlotDeckError):
    """A lease that expired, was revoked or released can no longer be renewed."""

    def __init__(self, lease_id: str, reason: str) -> None:
        super().__init__(f"lease {lease_id} is gone: {reason}")
        self.lease_id = lease_id
        self.reason = reason


class LeaseLost(LeaseGone):
    """A held remote lease is no longer protected: the server said it is gone (revoked, expired,
    unknown after a restart) or no renewal was confirmed before its local deadline (last confirmed
    renewal + TTL - safety margin, by the monotonic clock). The async `slot()` body is cancelled
    with it; the sync `slot()` raises it on exit and `lease.check()` raises it in long loops."""

    def __init__(self, lease_id: str, reason: str, queue: str | None = None) -> None:
        super().__init__(lease_id, reason)
        self.queue = queue


class ServerUnavailable(SlotDeckError):
    """The server is draining or restarting (503 `shutting_down`, or a 502/503/504 without a SlotDeck
    reason): retry after `retry_after_s`. `acquire()`/`slot()` retry it by default within their timeout."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnknownWaiter(SlotDeckError, KeyError):
    def __init__(self, waiter_id: str) -> None:
        super().__init__(waiter_id)
        self.waiter_id = waiter_id

    def __str__(self) -> str:
        return f"unknown or finished waiter {self.waiter_id!r}"


class NoFittingDevice(SlotDeckError):
    """A GPU request that no device of this host could ever satisfy."""


class QueueBusy(SlotDeckError):
    """A queue with holders or waiters cannot be deleted without force."""


class IdempotencyKeyReused(SlotDeckError):
    """A submit repeated an Idempotency-Key of the same caller with a different request (HTTP 422)."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was used for another request (job {job_id}); use a new key")
        self.job_id = job_id


class UnknownJob(SlotDeckError, KeyError):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id

    def __str__(self) -> str:
        return f"unknown job {self.job_id!r}"


class UnknownTask(SlotDeckError, KeyError):
    def __init__(self, task: str) -> None:
        super().__init__(task)
        self.task = task

    def __str__(self) -> str:
        return f"no task registered as {self.task!r}"


class StoreLocked(SlotDeckError):
    """Another process owns this store (it runs its jobs and holds its tokens); `pid` and `url` name it."""

    def __init__(self, store: str, pid: int | None, url: str | None) -> None:
        who = f"process {pid}" if pid is not None else "another process"
        where = f" serving {url}" if url else ""
        todo = (
            f"connect to it instead (slotdeck gui does; the CLI: --url {url})"
            if url
            else "stop that process first, or use another store (--store / SLOTDECK_HOME)"
        )
        super().__init__(f"store {store} is in use by {who}{where}; {todo}")
        self.store = store
        self.pid = pid
        self.url = url


class StoreFault(SlotDeckError):
    """The store cannot be written or read right now; `cause` says why ("disk full", "read-only", "corrupt", ...).

    Nothing the failed call asked for was applied.
    """

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(f"the store is failing: {cause} ({detail})")
        self.cause = cause
        self.detail = detail


class UnknownLease(SlotDeckError, KeyError):
    """No lease with this id is known (never made here, or ended so long ago that it was forgotten)."""

    def __init__(self, lease_id: str) -> None:
        super().__init__(lease_id)
        self.lease_id = lease_id

    def __str__(self) -> str:
        return f"no lease {self.lease_id!r} is known to this server"


class NotYours(SlotDeckError):
    """A client token acted on a lease or waiter that another token made (operators may act on any)."""

    def __init__(self, item_id: str) -> None:
        super().__init__(f"{item_id} was made by another token")
        self.item_id = item_id


class NotInRedisMode(SlotDeckError):
    """What a service on ``redis://`` does not do (jobs need a job store; deleting a queue, resetting marks)."""
