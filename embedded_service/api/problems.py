"""Errors as RFC 9457 `application/problem+json`, mapped from SlotDeck's error types.

`error_table.ERRORS` decides the status and code of every SlotDeck error, so that the API, the
clients (which map codes back to the same types) and the CLI's exit codes agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..error_table import row_for
from ..errors import ServerUnavailable, SlotDeckError, StoreFault
from ..stores.faults import as_fault

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


def retry_after(est_wait_s: float | None) -> int:
    """Whole seconds for `Retry-After`, from the estimated wait (at least 1)."""
    if est_wait_s is None or not math.isfinite(est_wait_s):
        return DEFAULT_RETRY_AFTER_S
    return max(1, math.ceil(est_wait_s))


def problem_response(
    status: int, title: str, detail: str | None = None, *, headers: Mapping[str, str] | None = None, **extra: Any
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
    row = row_for(exc)
    if row is None:
        return problem_response(409, "Request conflicts with the service's state", str(exc), code="conflict")
    if row.status == 503:
        wait = exc.retry_after_s if isinstance(exc, ServerUnavailable) else getattr(exc, "est_wait_s", None)
        seconds = retry_after(wait)
        headers = {"Retry-After": str(seconds)}
        return problem_response(503, row.title, str(exc), code=row.code, retry_after_s=seconds, headers=headers, **fields)
    return problem_response(row.status, row.title, str(exc), code=row.code, **fields)


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
    fault = as_fault(exc)  # a store that failed under the route (redis mode: Redis not answering)
    if isinstance(fault, StoreFault):
        return slotdeck_error_response(fault)
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
