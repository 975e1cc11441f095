"""Running the API under uvicorn: startup checks, the local token, and a graceful drain on SIGTERM/SIGINT.

The first signal stops admission, tells waiting clients (503, "shutting
down"), lets running leases finish for the grace period and only then stops
listening; a second signal cuts the grace short.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from ..config import ConfigError, Settings
from ..jobs import JobSettings
from ..jobs.environment import parse_pass_env
from ..localmode import (
    forget_local_endpoint,
    is_loopback,
    local_endpoint_path,
    other_local_service,
    stored_local_token,
    write_local_endpoint,
)
from ..model import AuditEntry, Role
from ..service import SlotService
from .app import api_state, create_app
from .auth import create_token, hash_token
from .commands import AllowListError, load_allowlist
from .deps import redact_url
from .headlimit import http_protocol
from .state import ApiState

log = logging.getLogger("slotdeck.server")

DEFAULT_QUEUE = "default"
LOCAL_TOKEN_NAME = "local"


class SlotDeckServer(uvicorn.Server):
    """uvicorn, but the first exit signal drains the API before the listener closes."""

    def __init__(self, config: uvicorn.Config, state: ApiState) -> None:
        super().__init__(config)
        self.state = state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.servers[0].sockets[0].getsockname()[1])

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None:
            super().handle_exit(sig, frame)
            return
        # not recorded for uvicorn to re-raise after serving: the store must close first, then we exit 0
        self._loop.call_soon_threadsafe(self.request_drain)

    def request_drain(self) -> None:
        """Begin the graceful stop (loop thread only); asked again, stop waiting for running work."""
        if self._drain_task is None:
            log.info(
                "stopping: no new admissions, waiting clients are told, running work gets %.0fs", self.state.settings.grace_s
            )
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())
        else:
            log.warning("asked again: not waiting for running work any longer")
            self.state.service.remote.hurry = True

    async def _drain(self) -> None:
        try:
            await self.state.drain()
        finally:
            self.should_exit = True


def _probes() -> dict[str, Any]:
    from ..probes import default_probes  # lazy: NVML is only touched by a real server

    gpu, host = default_probes()
    return {"gpu_probe": gpu, "host_probe": host}


async def open_service(store: str, *, probes: bool = True, default_limit: int | None = None, **kwargs: Any) -> SlotService:
    """Start a service on `store` with a `default` queue (its limit from settings when given)."""
    svc = SlotService(store=store, **(_probes() if probes else {}), **kwargs)
    await svc.start()
    if not svc.has_queue(DEFAULT_QUEUE):
        svc.configure_queue(DEFAULT_QUEUE, limit=1 if default_limit is None else default_limit)
        await svc.store.save_queue(svc.queue_config(DEFAULT_QUEUE))
    elif default_limit is not None:  # configuration, not an operator: an operator's live limit still wins
        svc.configure_queue(DEFAULT_QUEUE, limit=default_limit)
        await svc.store.save_queue(svc.queue_config(DEFAULT_QUEUE))
    return svc


async def local_admin_token(svc: SlotService) -> str:
    """The `local` admin token: the one local.json holds while the store still knows it, else a new one.

    So the token stays the same across restarts of one data directory, and scripts that read it keep working.
    """
    name = local_token_name(svc)
    known = stored_local_token()
    if known is not None:
        stored = await svc.store.find_token(hash_token(known))
        if stored is not None and stored.name == name and stored.role is Role.admin:
            return known
    token = await create_token(svc.store, name, Role.admin)
    role = {"role": Role.admin.value}
    await svc.store.add_audit(AuditEntry(at=time.time(), actor="service", action="token.replace", target=name, after=role))
    return token


def local_token_name(svc: SlotService) -> str:
    """`local`; in redis mode, where every server shares one token table, `local-<host>-<8 hex>` (one per host and
    data directory), so one server's start does not replace another's local token."""
    if svc.cluster is None:
        return LOCAL_TOKEN_NAME
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40]
    return f"local-{host}-{hashlib.sha256(str(local_endpoint_path()).encode()).hexdigest()[:8]}"


async def write_local_token(svc: SlotService, url: str) -> str:
    """Leave the `local` admin token (kept across restarts, see `local_admin_token`) and the URL in the 0600 local-mode
    file; returns the token. Only the store's owner calls this, and a file that names another running service (one
    on another store in the same data directory) is left as it is, said in one warning."""
    token = await local_admin_token(svc)
    other = other_local_service()
    if other is not None:
        log.warning(
            "%s names another running service (pid %d at %s): left as it is; reach this one at %s with --url "
            "and a token of its own store",
            local_endpoint_path(),
            *other,
            url,
        )
        return token
    path = write_local_endpoint(url, token)
    log.info("local admin token for %s written to %s", url, path)
    return token


async def check_bind(svc: SlotService, settings: Settings) -> None:
    """Refuse a non-loopback listener without tokens (or with auth off)."""
    if is_loopback(settings.host):
        return
    if not settings.auth:
        raise ConfigError(f"refusing to serve {settings.host} without authentication; drop --no-auth or bind 127.0.0.1")
    if not await svc.store.list_tokens():
        raise ConfigError(
            f"refusing to serve {settings.host} with no tokens configured; "
            "create one first: slotdeck token create --role admin --name NAME"
        )


def uvicorn_config(app: Any, settings: Settings, port: int | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port if port is None else port,
        log_config=None,
        access_log=settings.access_log or settings.log_level.upper() == "DEBUG",  # DEBUG: request lines demoted
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        timeout_graceful_shutdown=5,
        lifespan="on",
        http=http_protocol(),
    )


def base_url(settings: Settings, port: int) -> str:
    scheme = "https" if settings.ssl_certfile else "http"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{scheme}://{host}:{port}"


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (uvicorn[standard] brings it, except on Windows), as `uvicorn.run`
    would choose: it roughly halves the event loop's share of each request. None: asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_serve(settings: Settings) -> None:
    """Run `serve` to the end on the fastest event loop available."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(settings))


def app_options(settings: Settings) -> dict[str, Any]:
    """`create_app` options from the settings; AllowListError for an allow-list that cannot be used."""
    return {
        "auth": settings.auth,
        "snapshot_hz": settings.snapshot_hz,
        "max_poll_s": settings.max_poll_s,
        "grace_s": settings.grace_s,
        "max_body_bytes": settings.max_body_bytes,
        "commands": load_allowlist(settings.command_allowlist),
    }


def service_options(settings: Settings) -> dict[str, Any]:
    """`open_service` options from the settings: the job environment policy; redis mode's job store and lease TTL."""
    options: dict[str, Any] = {"jobs": JobSettings(pass_env=parse_pass_env(settings.job_env_pass))}
    if settings.job_store is not None:
        options["job_store"] = settings.job_store
    if settings.cluster_lease_ttl_s is not None:
        options["cluster_lease_ttl_s"] = settings.cluster_lease_ttl_s
    return options


async def serve(settings: Settings) -> None:
    """`slotdeck serve`: run until SIGTERM/SIGINT, then drain and close the store cleanly."""
    try:
        options = app_options(settings)
    except AllowListError as exc:
        raise ConfigError(str(exc)) from None
    svc = await open_service(
        settings.resolved_store(),
        probes=settings.probes,
        default_limit=settings.default_limit,
        **service_options(settings),
        **settings.gpu_service_kwargs(),
    )
    server: SlotDeckServer | None = None
    try:
        await check_bind(svc, settings)
        app = create_app(svc, **options)
        server = SlotDeckServer(uvicorn_config(app, settings), api_state(app))
        announce = asyncio.get_running_loop().create_task(_after_start(server, svc, settings))
        await server.serve()
        announce.cancel()
    finally:
        if server is not None and server.started:
            forget_local_endpoint()  # this process's file only: one serve, one server
        await svc.close()
        log.info("stopped; store closed")


async def _after_start(server: SlotDeckServer, svc: SlotService, settings: Settings) -> None:
    while not server.started and not server.should_exit:
        await asyncio.sleep(0.02)
    if server.started:
        url = base_url(settings, server.port)
        if svc.ownership is not None:
            svc.ownership.announce(url)
        if settings.local_token and settings.auth and is_loopback(settings.host):
            await write_local_token(svc, url)
        if svc.cluster is not None:
            await svc.cluster.advertise(settings.advertise_url or advertised_url(settings, server.port))
        log.info("serving %s (store %s, auth %s)", url, redact_url(svc.store_url), "on" if settings.auth else "OFF")


def advertised_url(settings: Settings, port: int) -> str:
    """The API URL a redis-mode server shows the deployment by default: its bound address, or for a wildcard
    bind (0.0.0.0, ::) its hostname, which other hosts can resolve where the wildcard means nothing."""
    if settings.host in ("0.0.0.0", "::", ""):
        return base_url(settings.model_copy(update={"host": socket.gethostname()}), port)
    return base_url(settings, port)
