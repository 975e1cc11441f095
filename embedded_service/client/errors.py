"""Client-side errors: problems from the server become the same SlotDeck error types a local
`SlotService` raises (by their `code`, through `error_table.ERRORS`), so code handling `SlotTimeout`
works in both places."""

from __future__ import annotations

import httpx

from ..error_table import row_for_code
from ..errors import SlotDeckError


class ApiError(SlotDeckError):
    """An HTTP error without a more specific SlotDeck type."""

    def __init__(self, status: int, title: str, detail: str | None = None, code: str | None = None) -> None:
        super().__init__(f"{status} {title}" + (f": {detail}" if detail else ""))
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code


class AuthError(ApiError):
    """401 (no or unknown token) or 403 (the token's role does not allow it)."""


class ConnectionFailed(SlotDeckError):
    """The server could not be reached or the connection broke."""


class PoolExhausted(SlotDeckError):
    """Every connection this client may open was busy for the whole timeout: the client is
    overloaded, not the server unreachable. `acquire()` waits on; other calls may be retried."""


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.1, min(60.0, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def error_from(response: httpx.Response) -> SlotDeckError:
    """The exception for an error response (problem+json or not)."""
    try:
        body = response.json()
        if not isinstance(body, dict):
            body = {}
    except ValueError:
        body = {}
    row = row_for_code(body.get("code"))
    if row is None and response.status_code in (502, 503, 504) and not body.get("code"):
        row = row_for_code("shutting_down")  # a proxy's answer while the server restarts
    if row is not None and row.build is not None:
        fields = {**body, "status": response.status_code, "title": body.get("title") or response.reason_phrase}
        return row.build(fields, _retry_after(response))
    title = str(body.get("title") or response.reason_phrase or "HTTP error")
    detail = body.get("detail") or (None if body else response.text[:500] or None)
    kind = AuthError if response.status_code in (401, 403) else ApiError
    return kind(response.status_code, title, detail, body.get("code"))
