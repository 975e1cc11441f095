"""Limits before work: who is calling, and how big the body is, before any of it is read.

Every route of the API goes through `guarded`:
- a `Content-Length` above the limit is answered 413 at once, the body unread;
- a body sent without a length (chunked) is counted as it streams in and cut
  off with 413 once it passes the limit, so the server never holds more than
  the limit (plus one network chunk) of it;
- a route that takes a body resolves its caller first, so a stranger gets 401
  (and a weaker role 403) before any byte of the body is read or validated.
  FastAPI would read and JSON-decode the body before its dependencies run.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from starlette.exceptions import HTTPException
from starlette.types import Message

from .problems import problem_for

if TYPE_CHECKING:
    from .deps import RoleCheck

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """413; an HTTPException so that FastAPI's body reading passes it on rather than making it a 400."""

    def __init__(self, limit: int) -> None:
        # Connection: close: the server drops the connection rather than reading the rest to reuse it
        super().__init__(
            413, f"the request body is larger than this server accepts ({limit} bytes)", headers={"Connection": "close"}
        )


class BadLength(HTTPException):
    def __init__(self) -> None:
        super().__init__(400, "the Content-Length header is not a number")


def check_length(request: Request, limit: int) -> bool:
    """Raise BodyTooLarge when the declared length is above `limit` (nothing is read); True when the body
    has no declared length and must be counted as it comes (the server holds a declared one to its length)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return "transfer-encoding" in request.headers
    try:
        length = int(declared)
    except ValueError:
        raise BadLength() from None
    if length > limit:
        raise BodyTooLarge(limit)
    return False


def counted(request: Request, limit: int) -> Request:
    """The request with a body that raises BodyTooLarge once more than `limit` bytes have come in."""
    receive = request.receive
    received = 0

    async def receive_counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return Request(request.scope, receive_counted)


def guarded(handler: Handler, limit: int, caller: RoleCheck | None) -> Handler:
    """Wrap a route handler: the length check, then `caller` (when given), then the handler on a counted body."""

    async def guard(request: Request) -> Response:
        unknown_length = "transfer-encoding" in request.headers
        try:
            unknown_length = check_length(request, limit)
            if caller is not None:
                await caller.resolve(request)
        except Exception as exc:
            refused = problem_for(exc)
            if unknown_length or request.headers.get("content-length", "0") != "0":
                refused.headers["Connection"] = "close"  # the body is not wanted: do not read it to reuse the connection
            return refused
        return await handler(counted(request, limit) if unknown_length else request)

    return guard
