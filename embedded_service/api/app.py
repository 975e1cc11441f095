"""Build the HTTP API: a standalone app, or a router to mount into an existing FastAPI app.

The router carries its own lifespan (start the service if nobody did, run the
event broker, drain and close on shutdown) and answers its own errors as
problem documents, so mounting it under `/slots` keeps the whole contract.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from .. import __version__
from ..service import SlotService
from .commands import CommandPolicy
from .deps import role_checker
from .guard import DEFAULT_MAX_BODY_BYTES
from .lean import route_class
from .problems import install_problem_handlers
from .routes_jobs import add_job_routes
from .routes_leases import add_lease_routes
from .routes_queues import add_queue_routes
from .routes_read import add_read_routes
from .routes_tokens import add_token_routes
from .routes_whoami import add_whoami_routes
from .state import ApiSettings, ApiState

log = logging.getLogger("slotdeck.api")

ServiceSource = SlotService | Callable[[], SlotService] | None


def _service(source: ServiceSource, service_kwargs: dict[str, Any]) -> SlotService:
    if isinstance(source, SlotService):
        return source
    if source is not None:
        return source()
    return SlotService(**service_kwargs)


HOT_PATHS = {
    path: rank
    for rank, path in enumerate(
        ("/v1/queues/{queue}/leases", "/v1/leases/{lease_id}", "/v1/leases/{lease_id}/renew", "/v1/snapshot")
    )
}


def router(
    service: ServiceSource = None,
    *,
    auth: bool = True,
    snapshot_hz: float = 2.0,
    max_poll_s: float = 30.0,
    grace_s: float = 30.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    commands: CommandPolicy | None = None,
    **service_kwargs: Any,
) -> APIRouter:
    """The API as a router: `app.include_router(router(svc), prefix="/slots")`.

    `service` is a SlotService, a factory, or None to build one from `service_kwargs`
    (e.g. `store="sqlite:///slotdeck.db"`). A service not yet started is started and
    closed by the router's lifespan; one the host app started is left to it.
    `auth=False` serves without tokens: only for a loopback listener. Request bodies above
    `max_body_bytes` get 413 unread; `commands` is the allow-list of commands a client may
    submit (default: none; operators and admins submit any).
    """
    svc = _service(service, service_kwargs)
    settings = ApiSettings(
        auth=auth,
        snapshot_hz=snapshot_hz,
        max_poll_s=max_poll_s,
        grace_s=grace_s,
        max_body_bytes=max_body_bytes,
        commands=commands or CommandPolicy(),
    )
    state = ApiState(svc, settings)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        owned = svc.started_at is None
        if owned:
            await svc.start()
        await state.broker.start()
        if state.token_watch is not None:
            state.token_watch.start()
        try:
            yield
        finally:
            await state.drain()
            if owned:
                await svc.close()

    r = APIRouter(route_class=route_class(max_body_bytes), lifespan=lifespan)
    r.slotdeck_state = state  # type: ignore[attr-defined]  # for the server's signal handling and tests
    need = role_checker(state)
    for add in (add_read_routes, add_queue_routes, add_lease_routes, add_job_routes, add_token_routes, add_whoami_routes):
        add(r, state, need)
    # Starlette tries routes in order, several microseconds each: the paths every client hits many times a
    # second go first (a stable sort: the rest keep their order, and no two of these paths overlap)
    r.routes.sort(key=lambda route: HOT_PATHS.get(getattr(route, "path", ""), len(HOT_PATHS)))
    return r


def api_state(app_or_router: FastAPI | APIRouter) -> ApiState:
    """The ApiState behind an app made by `create_app` or a router made by `router`."""
    target = getattr(app_or_router, "state", None)
    found = getattr(target, "slotdeck", None) if target is not None else None
    found = found or getattr(app_or_router, "slotdeck_state", None)
    if not isinstance(found, ApiState):
        raise LookupError("not a SlotDeck app or router")
    return found


def create_app(service: ServiceSource = None, **options: Any) -> FastAPI:
    """A standalone SlotDeck server app; options as for `router`.

    The routes are the app's own rather than an included router: FastAPI re-checks an
    included router's routes on every request, a tenth of an acquire's server time.
    """
    r = router(service, **options)
    app = FastAPI(
        title="SlotDeck",
        version=__version__,
        description="Queues with concurrency slots for slow GPU/LLM work: leases, jobs, live state and operator controls.",
        routes=r.routes,
        lifespan=r.lifespan_context,
    )
    app.state.slotdeck = r.slotdeck_state  # type: ignore[attr-defined]
    install_problem_handlers(app)
    return app
