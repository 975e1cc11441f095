"""`RemoteLease`: a slot held over HTTP, shaped like the local `Lease`, renewed in the background.

Every lease keeps a local deadline by the monotonic clock: the moment its last
confirmed renewal was *sent* + TTL - a safety margin. The server's expiry is
never earlier than send time + TTL, so when the deadline passes without a
confirmed renewal (whatever the reason: network silent, pool busy, 401, the
server gone) the holder is told the lease is lost before the server can give
the slot to anyone else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import LeaseLost
from ..model import LeaseInfo

log = logging.getLogger("slotdeck.client")

RENEW_FRACTION = 1 / 3  # renew when a third of the TTL has passed: two heartbeats may fail before it expires
RETRY_S = 0.5  # after a failed renewal, try again this soon (bounded by the renewal period)
MARGIN_FRACTION = 0.2  # safety margin: this share of the TTL ...
MARGIN_MIN_S = 0.25  # ... at least this ...
MARGIN_MAX_S = 2.0  # ... at most this (seconds)


def safety_margin_s(ttl_s: float) -> float:
    """Seconds before the TTL runs out (from the last confirmed renewal) at which a lease counts as lost."""
    return min(MARGIN_MAX_S, max(MARGIN_MIN_S, ttl_s * MARGIN_FRACTION))


class RemoteLease:
    """What `acquire()` returns: the lease's fields (`id`, `queue`, `owner`, `fence`, `devices`, ...) plus

    - `lost`: None while held; the reason once it is lost (revoked, expired, unknown to the server,
      no renewal confirmed in time),
    - `check()`: raises `LeaseLost` once lost (for long loops in sync code),
    - `on_lost`: an optional callback `f(lease)` run once, from the renewal task/thread, when it is lost,
    - `deadline`: the local deadline (monotonic seconds) a confirmed renewal moves on.
    """

    def __init__(
        self, info: LeaseInfo, ttl_s: float, sent_at: float, on_lost: Callable[[RemoteLease], Any] | None = None
    ) -> None:
        self.info = info
        self.ttl_s = ttl_s
        self.margin_s = safety_margin_s(ttl_s)
        self.lost: str | None = None
        self.lost_at: float | None = None  # monotonic
        self.released = False
        self.on_lost = on_lost
        self.deadline = sent_at + ttl_s - self.margin_s
        self.next_renew_at = sent_at + self.renew_every_s
        self._cancel_body: Callable[[], Any] | None = None  # set by slot(): how a loss reaches the body
        self._stop: Callable[[], object] | None = None
        self._lock = threading.Lock()

    @property
    def renew_every_s(self) -> float:
        return max(0.2, self.ttl_s * RENEW_FRACTION)

    @property
    def held(self) -> bool:
        return self.lost is None and not self.released

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["info"], name)

    def confirmed(self, info: LeaseInfo, sent_at: float) -> None:
        """A renewal sent at `sent_at` (monotonic) was answered: the deadline moves on."""
        self.info = info
        self.deadline = max(self.deadline, sent_at + self.ttl_s - self.margin_s)
        self.next_renew_at = sent_at + self.renew_every_s

    def failed(self, now: float) -> None:
        self.next_renew_at = now + min(self.renew_every_s, RETRY_S)

    def check(self) -> None:
        """Raise `LeaseLost` if the lease is lost; a cheap call for long loops in sync bodies."""
        if self.lost is not None:
            raise LeaseLost(self.info.id, self.lost, self.info.queue)
        if not self.released and time.monotonic() >= self.deadline:
            self.mark_lost("no renewal was confirmed within its TTL")
            raise LeaseLost(self.info.id, self.lost or "lost", self.info.queue)

    def error(self) -> LeaseLost:
        return LeaseLost(self.info.id, self.lost or "lost", self.info.queue)

    def mark_lost(self, reason: str) -> bool:
        """Record the loss once and tell the holder (body first, then `on_lost`); False if already ended."""
        with self._lock:
            if self.lost is not None or self.released:
                return False
            self.lost = reason
            self.lost_at = time.monotonic()
        log.warning("lease %s in queue %s is lost: %s", self.info.id, self.info.queue, reason)
        if self._cancel_body is not None:
            self._cancel_body()
        if self.on_lost is not None:
            try:
                self.on_lost(self)
            except Exception:
                log.exception("on_lost callback of lease %s failed", self.info.id)
        return True

    def __repr__(self) -> str:
        state = "released" if self.released else f"lost ({self.lost})" if self.lost else "held"
        return f"<RemoteLease {self.info.id} queue={self.info.queue!r} fence={self.info.fence} {state}>"
