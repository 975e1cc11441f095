"""Errors as RFC 9457 `application/problem+json`, mapped from SlotDeck's error types.

One table decides the status of every error so that the API, its OpenAPI
schema and the client (which maps statuses back to the same types) agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    IdempotencyKeyReused,
    LeaseGone,
    NoFittingDevice,
    QueueBusy,
    QueueFull,
    SlotCancelled,
    SlotDeckError,
    SlotTimeout,
    StoreFault,
    UnknownJob,
    UnknownQueue,
    UnknownTask,
    UnknownWaiter,
)

log = logging.getLogger("slotdeck.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
DEFAULT_RETRY_AFTER_S = 1


class Problem(BaseModel):
    """An error: `title` says what went wrong, `detail` says it for this request."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    code: str | None = Field(default=None, description="Stable machine-readable name, e.g. 'slot_timeout'.")
    retry_after_s: int | None = None
    errors: list[dict[str, Any]] | None = Field(default=None, description="Field errors of a 422.")


class ApiProblem(Exception):
    """Raised by routes for errors that are not SlotDeck errors (auth, shutdown, ownership)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code
        self.headers = headers or {}


class ShuttingDown(ApiProblem):
    def __init__(self) -> None:
        super().__init__(
            503,
            "Server is shutting down",
            "this server is draining for a restart and admits no new work; retry shortly",
            code="shutting_down",
            headers={"Retry-After": "5"},
        )


# error type -> (status, title, code); the first matching base wins
_ERRORS: list[tuple[type[BaseException], int, str, str]] = [
    (StoreFault, 503, "Store unavailable", "store_failing"),
    (SlotTimeout, 503, "No slot before the timeout", "slot_timeout"),
    (QueueFull, 503, "Queue is full", "queue_full"),
    (UnknownQueue, 404, "Unknown queue", "unknown_queue"),
    (UnknownWaiter, 404, "Unknown waiter", "unknown_waiter"),
    (UnknownJob, 404, "Unknown job", "unknown_job"),
    (UnknownTask, 404, "Unknown task", "unknown_task"),
    (LeaseGone, 410, "Lease is gone", "lease_gone"),
    (IdempotencyKeyReused, 422, "Idempotency-Key reused", "idempotency_key_reused"),
    (SlotCancelled, 409, "Wait was cancelled", "wait_cancelled"),
    (QueueBusy, 409, "Queue is busy", "queue_busy"),
    (NoFittingDevice, 409, "No device can fit this request", "no_fitting_device"),
]


def retry_after(est_wait_s: float | None) -> int:
    """Whole seconds for `Retry-After`, from the estimated wait (at least 1)."""
    if est_wait_s is None or not math.isfinite(est_wait_s):
        return DEFAULT_RETRY_AFTER_S
    return max(1, math.ceil(est_wait_s))


def problem_response(
    status: int, title: str, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail, **extra).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


# attributes of SlotDeck errors sent along so the client can raise the same error type
ERROR_FIELDS = (
    "cause",
    "queue",
    "waited_s",
    "est_wait_s",
    "waiting",
    "lease_id",
    "reason",
    "waiter_id",
    "job_id",
    "task",
    "name",
)


def slotdeck_error_response(exc: SlotDeckError) -> JSONResponse:
    fields = {name: getattr(exc, name) for name in ERROR_FIELDS if getattr(exc, name, None) is not None}
    for error_type, status, title, code in _ERRORS:
        if isinstance(exc, error_type):
            if status == 503:
                seconds = retry_after(getattr(exc, "est_wait_s", None))
                return problem_response(
                    status,
                    title,
                    str(exc),
                    code=code,
                    retry_after_s=seconds,
                    headers={"Retry-After": str(seconds)},
                    **fields,
                )
            return problem_response(status, title, str(exc), code=code, **fields)
    return problem_response(409, "Request conflicts with the service's state", str(exc), code="conflict")


def _field_errors(errors: Any) -> list[dict[str, Any]]:
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors]


def problem_for(exc: BaseException) -> JSONResponse:
    """The problem response for an error raised while serving a route (unexpected ones are logged, not shown)."""
    if isinstance(exc, SlotDeckError):
        return slotdeck_error_response(exc)
    if isinstance(exc, ApiProblem):
        return problem_response(exc.status, exc.title, exc.detail, code=exc.code, headers=exc.headers)
    if isinstance(exc, RequestValidationError | ValidationError):
        errors = _field_errors(exc.errors())
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"])
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        return problem_response(422, "Invalid request", detail, code="invalid", errors=errors)
    if isinstance(exc, StarletteHTTPException):
        titles = {404: "Not found", 405: "Method not allowed", 413: "Request body too large"}
        title = titles.get(exc.status_code, "Request failed")
        return problem_response(exc.status_code, title, str(exc.detail), headers=exc.headers)
    log.error("unexpected error serving a request", exc_info=exc)
    return problem_response(500, "Internal error", "the server failed to handle this request; see its log")


class ProblemRoute(APIRoute):
    """A route that answers its own errors as problem documents, so a router mounted into
    someone else's app keeps its error contract without app-level handlers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def problem_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return problem_for(exc)

        return problem_handler


def install_problem_handlers(app: FastAPI) -> None:
    """App-level errors (unknown path, wrong method) as problem documents too."""

    async def on_http(_: Request, exc: Exception) -> Response:
        return problem_for(exc)

    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_http)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problem statuses a route can answer."""
    descriptions = {
        401: "No or unknown bearer token",
        403: "The token's role does not allow this",
        404: "Unknown queue, lease, waiter or job",
        409: "Conflicts with the current state",
        410: "Lease expired or was revoked",
        422: "Invalid input",
        503: "No slot in time, queue full, server draining or store failing (see Retry-After)",
    }
    return {
        status: {
            "model": Problem,
            "description": descriptions.get(status, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
