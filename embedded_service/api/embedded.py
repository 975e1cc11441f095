"""`EmbeddedServer`: the API and a SlotService on a background thread with its own loop.

The desktop runs one for local single-user mode; tests run them to talk real
HTTP over loopback. `start()` returns once the listener accepts connections;
`stop()` drains gracefully like a SIGTERM would.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from ..config import Settings
from ..localmode import data_dir, forget_local_endpoint
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
            **({} if max_body_bytes is None else {"max_body_bytes": max_body_bytes}),
        )
        self.commands = commands
        self.write_local = write_local
        self.setup = setup
        self.service_kwargs = service_kwargs
        self.url = ""
        self.token: str | None = None
        self._service: SlotService | None = None
        self._server: SlotDeckServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def service(self) -> SlotService:
        if self._service is None:
            raise RuntimeError("the embedded server is not started")
        return self._service

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the embedded server is not started")
        return self._loop

    def start(self, timeout: float = 60.0) -> EmbeddedServer:
        """Start the service and the listener; returns when it serves (raises what stopped it)."""
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="slotdeck-server", daemon=True)
        self._thread.start()
        ready.result(timeout)
        return self

    def _run(self, ready: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.exception("embedded server stopped with an error")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self, ready: Future[None]) -> None:
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
            ready.set_result(None)
            await serving
        finally:
            if self.write_local and self.url:
                forget_local_endpoint(self.url)
            await svc.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the server's loop (e.g. to configure the service) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float | None = 60.0) -> None:
        """Drain (waiting clients told, running leases given the grace period), then stop and close the store."""
        if self._thread is None or self._loop is None or self._server is None:
            return
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._server.request_drain)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
