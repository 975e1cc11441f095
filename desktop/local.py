"""Local single-user mode: the dashboard's own service on a background thread.

SQLite in the user's data directory, 127.0.0.1 on a free port, the `default`
queue and the local GPUs (NVML probe), and a generated admin token left 0600 in
the local-mode file so that the CLI and local scripts reach the same service.

When another process already owns that store (`slotdeck serve`, another
dashboard), the dashboard connects to it instead of starting its own: nothing
of the owner's (jobs, tokens, local.json) is touched.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from embedded_service.api.embedded import EmbeddedServer
from embedded_service.errors import StoreLocked
from embedded_service.localmode import read_local_endpoint
from embedded_service.stores.ownership import wait_for_owner_url

from .connection import ConnectionSpec

log = logging.getLogger("slotdeck.desktop.local")

LOCAL_NAME = "Local"
OWNER_URL_WAIT_S = 15.0  # an owner that is still starting announces its URL within this


class LocalService:
    """Starts and stops the embedded server without blocking the Qt thread."""

    def __init__(self, store_url: str | None = None, **server_kwargs: Any) -> None:
        self._server = EmbeddedServer(store_url, **server_kwargs)
        self.attached: str | None = None  # the URL of the running service used instead of our own

    @property
    def server(self) -> EmbeddedServer:
        return self._server

    async def start(self) -> tuple[ConnectionSpec, str | None]:
        """Start the service (in a worker thread: opening the store may take a moment); returns how to reach it.

        If another process owns the store, returns how to reach that one (its token from local.json when that
        file names it); `StoreLocked` only when the owner serves no HTTP API.
        """
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._server.start)
        except StoreLocked as exc:
            return await self._attach(exc)
        log.info("local service at %s (store %s)", self._server.url, self._server.settings.store)
        return ConnectionSpec(name=LOCAL_NAME, url=self._server.url, local=True, remember=False), self._server.token

    async def _attach(self, locked: StoreLocked) -> tuple[ConnectionSpec, str | None]:
        url = locked.url
        if url is None:
            store = self._server.settings.resolved_store()
            owner = await asyncio.to_thread(wait_for_owner_url, store, OWNER_URL_WAIT_S)
            url = owner.url if owner is not None else None
        if url is None:
            raise locked
        known = read_local_endpoint()
        token = known[1] if known is not None and known[0].rstrip("/") == url.rstrip("/") else None
        self.attached = url
        log.info("the local store is owned by process %s at %s: connecting to it", locked.pid, url)
        # not `local`: quitting the dashboard does not stop that service or its jobs
        return ConnectionSpec(name=LOCAL_NAME, url=url, local=False, remember=False), token

    async def stop(self) -> None:
        """Drain like SIGTERM: running work gets the grace period, then goes back to the queue for the next start.

        A service we only connected to is left running."""
        await asyncio.get_running_loop().run_in_executor(None, self._server.stop)
