"""`RemoteLease`: a slot held over HTTP, shaped like the local `Lease`, renewed in the background."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..model import LeaseInfo

log = logging.getLogger("slotdeck.client")

RENEW_FRACTION = 1 / 3  # renew when a third of the TTL has passed: two heartbeats may fail before it expires


class RemoteLease:
    """What `acquire()` returns: the lease's fields (`id`, `queue`, `owner`, `fence`, `devices`, ...)
    plus `lost`, the reason once the server said the lease is gone (revoked, expired)."""

    def __init__(self, info: LeaseInfo, ttl_s: float) -> None:
        self.info = info
        self.ttl_s = ttl_s
        self.lost: str | None = None
        self.released = False
        self.on_lost: Callable[[], Any] | None = None
        self._stop: Callable[[], None] | None = None

    @property
    def renew_every_s(self) -> float:
        return max(0.2, self.ttl_s * RENEW_FRACTION)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["info"], name)

    def mark_lost(self, reason: str) -> None:
        if self.lost is None and not self.released:
            self.lost = reason
            log.warning("lease %s in queue %s is gone: %s", self.info.id, self.info.queue, reason)
            if self.on_lost is not None:
                self.on_lost()

    def __repr__(self) -> str:
        state = "released" if self.released else f"lost ({self.lost})" if self.lost else "held"
        return f"<RemoteLease {self.info.id} queue={self.info.queue!r} fence={self.info.fence} {state}>"
