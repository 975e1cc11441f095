"""What the async and sync clients share besides the calls: connection options and reading answers."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx

from .calls import Call
from .errors import ApiError, error_from

T = TypeVar("T")

Verify = bool | str | Path

MAX_CONNECTIONS = 1000  # long-polls and other calls: one waiting acquire holds one connection
CONTROL_CONNECTIONS = 32  # renewals, releases, withdrawals: their own pool, never behind long-polls
RETRY_S = 300.0  # how long acquire() retries an unavailable server when the call has no timeout_s


def http_options(
    base_url: str, token: str | None, verify: Verify, timeout: float, max_connections: int = MAX_CONNECTIONS
) -> dict[str, Any]:
    """httpx client options: base URL, bearer header, TLS verification (True, False or a CA file), pool size."""
    headers = {"Accept": "application/json", "User-Agent": "slotdeck-client"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    verify_opt: bool | ssl.SSLContext = (
        verify if isinstance(verify, bool) else ssl.create_default_context(cafile=str(verify))
    )
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(100, max_connections))
    return {
        "base_url": base_url.rstrip("/"),
        "headers": headers,
        "verify": verify_opt,
        "timeout": timeout,
        "limits": limits,
    }


def stream_timeout(timeout: float, read_s: float | None) -> httpx.Timeout:
    """Connect within `timeout`; a stream may then stay quiet for `read_s` (None: forever)."""
    return httpx.Timeout(timeout, read=read_s)


def read(call: Call[T], response: httpx.Response) -> T:
    """The parsed answer, or the SlotDeck error the server's problem document names."""
    if response.status_code >= 400:
        raise error_from(response)
    try:
        return call.parse(response)
    except ValueError as exc:  # not JSON, or not the shape SlotDeck answers with (pydantic errors are ValueErrors)
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ApiError(
            response.status_code, "Unexpected answer", f"{response.request.url} did not answer as SlotDeck does ({first})"
        ) from None


def describe_failure(base_url: str, exc: Exception) -> str:
    return f"cannot reach SlotDeck at {base_url}: {exc.__class__.__name__}: {exc}".rstrip(": ")


def describe_pool(base_url: str, control: bool) -> str:
    which = "renewal/release" if control else "request"
    return f"every {which} connection of this client to {base_url} stayed busy: the client is overloaded, not the server"


class SentAt:
    """When a request's headers were written to the socket (monotonic seconds): a lower bound of when the
    server handled it, so a lease's local deadline may count from it. Starts at creation (before any wait
    for a pool slot or a connection) and moves to the write; pass `trace()`/`atrace()` as httpx's trace."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = time.monotonic()

    def trace(self, name: str, info: dict[str, Any]) -> None:
        if name.endswith("send_request_headers.started"):
            self.at = time.monotonic()

    async def atrace(self, name: str, info: dict[str, Any]) -> None:
        self.trace(name, info)
