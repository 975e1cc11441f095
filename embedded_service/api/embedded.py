"""`EmbeddedServer`: the API and a SlotService on a background thread with its own loop (a `LoopThread`).

The desktop runs one for local single-user mode; tests run them to talk real
HTTP over loopback. `start()` returns once the listener accepts connections;
`stop()` drains gracefully like a SIGTERM would.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from ..config import Settings
from ..localmode import data_dir, forget_local_endpoint
from ..loopthread import LoopThread
from ..model import Role
from ..service import SlotService
from .app import api_state, create_app
from .auth import create_token
from .commands import CommandPolicy
from .server import (
    LOCAL_TOKEN_NAME,
    SlotDeckServer,
    app_options,
    base_url,
    open_service,
    uvicorn_config,
    write_local_token,
)

log = logging.getLogger("slotdeck.embedded")

T = TypeVar("T")
Setup = Callable[[SlotService], Awaitable[None] | None]


class EmbeddedServer:
    """A local SlotDeck server: `with EmbeddedServer("sqlite:///x.db") as srv: Client(srv.url, srv.token)`."""

    def __init__(
        self,
        store_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        probes: bool = True,
        write_local: bool = True,
        auth: bool = True,
        grace_s: float = 5.0,
        snapshot_hz: float = 2.0,
        max_poll_s: float = 30.0,
        default_limit: int | None = None,
        setup: Setup | None = None,
        ssl_certfile: Path | None = None,
        ssl_keyfile: Path | None = None,
        max_body_bytes: int | None = None,
        commands: CommandPolicy | None = None,
        **service_kwargs: Any,
    ) -> None:
        limits: dict[str, Any] = {} if max_body_bytes is None else {"max_body_bytes": max_body_bytes}
        self.settings = Settings(
            host=host,
            port=port,
            store=store_url or f"sqlite:///{data_dir() / 'slotdeck.db'}",
            auth=auth,
            grace_s=grace_s,
            snapshot_hz=snapshot_hz,
            max_poll_s=max_poll_s,
            default_limit=default_limit,
            probes=probes,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            **limits,
        )
        self.commands = commands
        self.write_local = write_local
        self.setup = setup
        self.service_kwargs = service_kwargs
        self.url = ""
        self.token: str | None = None
        self._service: SlotService | None = None
        self._server: SlotDeckServer | None = None
        self._host = LoopThread("slotdeck-server", "the embedded server")

    @property
    def service(self) -> SlotService:
        if self._service is None:
            raise RuntimeError("the embedded server is not started")
        return self._service

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._host.loop

    def start(self, timeout: float = 60.0) -> EmbeddedServer:
        """Start the service and the listener; returns when it serves (raises what stopped it)."""
        self._host.start(self._main, timeout)
        return self

    async def _main(self, ready: Callable[[], None]) -> None:
        s = self.settings
        svc = await open_service(s.resolved_store(), probes=s.probes, default_limit=s.default_limit, **self.service_kwargs)
        self._service = svc
        try:
            if self.setup is not None:
                outcome = self.setup(svc)
                if inspect.isawaitable(outcome):
                    await outcome
            app = create_app(svc, **{**app_options(s), "commands": self.commands})
            server = SlotDeckServer(uvicorn_config(app, s), api_state(app))
            self._server = server
            serving = asyncio.create_task(server.serve())
            while not server.started:
                if serving.done():
                    serving.result()
                    raise RuntimeError(f"the server could not listen on {s.host}:{s.port}")
                await asyncio.sleep(0.01)
            self.url = base_url(s, server.port)
            if svc.ownership is not None:
                svc.ownership.announce(self.url)
            if s.auth:
                if self.write_local:
                    self.token = await write_local_token(svc, self.url)
                else:
                    self.token = await create_token(svc.store, LOCAL_TOKEN_NAME, Role.admin)
            ready()
            await serving
        finally:
            if self.write_local and self.url:
                forget_local_endpoint(self.url)
            await svc.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the server's loop (e.g. to configure the service) and wait for it."""
        return self._host.call(coro, timeout)

    def stop(self, timeout: float | None = 60.0) -> None:
        """Drain (waiting clients told, running leases given the grace period), then stop and close the store."""
        if self._server is None:
            return
        if self._host.running:
            self._host.call_soon(self._server.request_drain)
        self._host.join(timeout)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
