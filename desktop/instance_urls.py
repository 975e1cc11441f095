"""The URLs of one logical server: the one the operator saved, the other instances they listed, and those
the deployment itself reports (`InstanceInfo.url` in its snapshots), in the order a connection tries them.

No I/O and no Qt: the connection asks which URL to use now, moves on when it stops answering, and hands
in the URLs each snapshot reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlparse

from embedded_service.localmode import is_loopback
from embedded_service.model import Snapshot


def check_url(url: str) -> str | None:
    """Why `url` cannot name a SlotDeck server, or None. Plain http is for this machine only: elsewhere the
    bearer token would cross the network in clear."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        return "The URL must start with http:// or https://"
    if not parsed.hostname:
        return "The URL names no host"
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        return "Use https:// for another machine: over http:// its token would cross the network unencrypted"
    return None


def normal(url: str) -> str:
    """The URL as compared and stored: trimmed, without a trailing slash."""
    return url.strip().rstrip("/")


def unique(urls: Iterable[str]) -> tuple[str, ...]:
    """The URLs in order, each once (after `normal`), empty ones dropped."""
    seen: dict[str, None] = {}
    for url in urls:
        if normal(url):
            seen.setdefault(normal(url), None)
    return tuple(seen)


def reported_urls(snap: Snapshot) -> tuple[str, ...]:
    """The instance URLs a deployment's snapshot reports, live instances first; URLs that `check_url` refuses
    (plain http to another machine: the token would go in clear) are left out."""
    ordered = sorted((i for i in snap.instances if i.url), key=lambda i: i.stale)
    return unique(i.url for i in ordered if i.url and check_url(i.url) is None)


class InstanceUrls:
    """The URLs to try, in order: `primary`, then `extra` (the operator's), then `learnt` (reported by the
    deployment); `current` is the one in use. `advance()` moves to the next (wrapping); `learn()` replaces the
    learnt ones, keeping `current` where it is."""

    def __init__(self, primary: str, extra: Iterable[str] = (), learnt: Iterable[str] = ()) -> None:
        self.primary = normal(primary)
        self.extra = tuple(u for u in unique(extra) if u != self.primary)
        self.learnt: tuple[str, ...] = ()
        self._all: tuple[str, ...] = (self.primary, *self.extra)
        self._at = 0
        self.learn(learnt)

    @property
    def all(self) -> tuple[str, ...]:
        return self._all

    @property
    def current(self) -> str:
        return self._all[self._at]

    def __len__(self) -> int:
        return len(self._all)

    def advance(self) -> str:
        """Move to the next URL (after the last, back to the first); returns it."""
        self._at = (self._at + 1) % len(self._all)
        return self.current

    def learn(self, urls: Iterable[str]) -> bool:
        """Make `urls` the learnt ones (those not already primary or extra); True when that changed them."""
        known = (self.primary, *self.extra)
        learnt = tuple(u for u in unique(urls) if u not in known)
        if learnt == self.learnt:
            return False
        current = self.current
        self.learnt = learnt
        self._all = (*known, *learnt)
        if current not in self._all:  # the one in use was learnt and is no longer reported: kept until it fails
            self._all = (*self._all, current)
        self._at = self._all.index(current)
        return True
