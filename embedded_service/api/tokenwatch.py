"""End the streams of a token revoked or replaced through another server of a redis-mode deployment.

A server ends the open `/v1/events` and `log?follow=true` streams of a token deleted or replaced through
its own API at once (`EventBroker.end_streams_of`). In redis mode the token table is shared (`cluster.access`)
and a change can come through any server, or `slotdeck token create|delete --store redis://...`: `TokenWatch`
reads the table every `period_s` (seconds; one HGETALL) and ends the streams of every name whose token is
gone or has another hash than at the last reading, and of every open stream whose name has no token.
A Redis that does not answer skips a reading (its health says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..stores import Store
    from .auth import Authenticator
    from .events import EventBroker

log = logging.getLogger("slotdeck.api")

PERIOD_S = 1.0


class TokenWatch:
    """Polls `store`'s tokens; ends `broker` streams of changed or missing ones and drops `auth`'s cache."""

    def __init__(self, store: Store, broker: EventBroker, auth: Authenticator, period_s: float = PERIOD_S) -> None:
        self.store = store
        self.broker = broker
        self.auth = auth
        self.period_s = period_s
        self._hashes: dict[str, str] | None = None  # name -> token hash at the last reading
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="slotdeck-token-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> list[str]:
        """Read the token table once; end the streams of changed, gone or unknown names (returned, sorted)."""
        hashes = {token.name: token.token_hash for token in await self.store.list_tokens()}
        before = self._hashes if self._hashes is not None else hashes
        changed = {name for name, digest in before.items() if hashes.get(name) != digest}
        changed |= {name for name in self.broker.holders() if name not in hashes}
        self._hashes = hashes
        if changed:
            self.auth.forget()  # a lookup cached before the change must not let the old token in again
        for name in sorted(changed):
            self.broker.end_streams_of(name)
        return sorted(changed)

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception as exc:  # Redis away (shown by /v1/health): try again at the next period
                log.debug("reading the shared tokens failed: %s", exc)
            await asyncio.sleep(self.period_s)
