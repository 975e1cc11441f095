"""What the async and sync clients share besides the calls: connection options and reading answers."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, TypeVar

import httpx

from .calls import Call
from .errors import ApiError, error_from

T = TypeVar("T")

Verify = bool | str | Path


def http_options(base_url: str, token: str | None, verify: Verify, timeout: float) -> dict[str, Any]:
    """httpx client options: base URL, bearer header, TLS verification (True, False or a CA file)."""
    headers = {"Accept": "application/json", "User-Agent": "slotdeck-client"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    verify_opt: bool | ssl.SSLContext = (
        verify if isinstance(verify, bool) else ssl.create_default_context(cafile=str(verify))
    )
    return {"base_url": base_url.rstrip("/"), "headers": headers, "verify": verify_opt, "timeout": timeout}


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
