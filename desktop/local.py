"""Local single-user mode: the dashboard's own service on a background thread.

SQLite in the user's data directory, 127.0.0.1 on a free port, the `default`
queue and the local GPUs (NVML probe), and a generated admin token left 0600 in
the local-mode file so that the CLI and local scripts reach the same service.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from embedded_service.api.embedded import EmbeddedServer

from .connection import ConnectionSpec

log = logging.getLogger("slotdeck.desktop.local")

LOCAL_NAME = "Local"


class LocalService:
    """Starts and stops the embedded server without blocking the Qt thread."""

    def __init__(self, store_url: str | None = None, **server_kwargs: Any) -> None:
        self._server = EmbeddedServer(store_url, **server_kwargs)

    @property
    def server(self) -> EmbeddedServer:
        return self._server

    async def start(self) -> tuple[ConnectionSpec, str | None]:
        """Start the service (in a worker thread: opening the store may take a moment); returns how to reach it."""
        await asyncio.get_running_loop().run_in_executor(None, self._server.start)
        log.info("local service at %s (store %s)", self._server.url, self._server.settings.store)
        return ConnectionSpec(name=LOCAL_NAME, url=self._server.url, local=True, remember=False), self._server.token

    async def stop(self) -> None:
        """Drain like SIGTERM: running work gets the grace period, then is recorded as interrupted."""
        await asyncio.get_running_loop().run_in_executor(None, self._server.stop)
