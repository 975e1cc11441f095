"""Store faults: name the cause of a failing SQLite call, and keep the store's health.

A full disk, a read-only file system or a corrupt database file make every
write fail the same way for as long as they last. `classify` turns SQLite's
error into a short cause ("disk full", "read-only", "corrupt", "I/O error",
"locked", "unavailable"; in redis mode "redis unreachable"); `StoreHealth` logs the first failure of each cause
once (one line, no traceback), counts the rest, and logs once more when writes
succeed again. `/v1/health` and the 503 problems show what it knows.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field

from ..errors import StoreFault

log = logging.getLogger("slotdeck.stores")

# (substring of SQLite's message, cause); the first match wins
_CAUSES: tuple[tuple[str, str], ...] = (
    ("database or disk is full", "disk full"),
    ("readonly", "read-only"),
    ("read-only", "read-only"),
    ("malformed", "corrupt"),
    ("not a database", "corrupt"),
    ("disk i/o error", "I/O error"),
    ("database is locked", "locked"),
    ("unable to open database file", "unavailable"),
)

_ERRNO_CAUSES = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk full", errno.EROFS: "read-only", errno.EIO: "I/O error"}


def classify(exc: BaseException) -> str | None:
    """The cause a store error stands for, or None for an error of the call itself (a constraint, a bug)."""
    if isinstance(exc, StoreFault):
        return exc.cause
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return None
    if isinstance(exc, sqlite3.Error):
        message = str(exc).lower()
        for needle, cause in _CAUSES:
            if needle in message:
                return cause
        return None
    if isinstance(exc, OSError):
        return _ERRNO_CAUSES.get(exc.errno or 0)
    redis_errors = sys.modules.get("redis.exceptions")  # redis mode: loaded only when the redis extra is used
    if redis_errors is not None and isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return "redis unreachable"
    return None


def as_fault(exc: BaseException) -> BaseException:
    """`StoreFault` for a store failure (its cause named), else the error unchanged."""
    cause = classify(exc)
    if cause is None or isinstance(exc, StoreFault):
        return exc
    return StoreFault(cause, str(exc))


@dataclass
class StoreHealth:
    """Whether the store's last write went through; failures counted per cause. Thread-safe (the writer thread reports)."""

    failing: str | None = None  # the cause of the last failure, None once a write succeeds again
    since: float | None = None  # when the current failing spell began (epoch s)
    errors: dict[str, int] = field(default_factory=dict)  # failures per cause since open
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())

    def failed(self, cause: str, exc: BaseException, what: str = "write") -> None:
        """Count a failure; log it only when the cause is new for this failing spell."""
        with self._lock:
            first = self.failing != cause
            self.errors[cause] = self.errors.get(cause, 0) + 1
            if self.failing is None:
                self.since = time.time()
            self.failing = cause
        if first:
            log.error(
                "store %s failed: %s (%s); further failures are counted, not logged, until it works again",
                what,
                cause,
                exc,
            )

    def ok(self) -> None:
        """A write went through: the store is healthy again (logged once if it was failing)."""
        if self.failing is None:
            return
        with self._lock:
            cause, since, self.failing, self.since = self.failing, self.since, None, None
        log.warning(
            "store works again after %.0fs of %s (%d failure(s) since open)",
            time.time() - (since or time.time()),
            cause,
            self.total_errors,
        )
