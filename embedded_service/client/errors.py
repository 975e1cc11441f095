"""Client-side errors: problems from the server become the same SlotDeck error types a local
`SlotService` raises, so code handling `SlotTimeout` works in both places."""

from __future__ import annotations

from typing import Any

import httpx

from ..errors import (
    LeaseGone,
    NoFittingDevice,
    QueueBusy,
    QueueFull,
    ServerUnavailable,
    SlotCancelled,
    SlotDeckError,
    SlotTimeout,
    UnknownJob,
    UnknownQueue,
    UnknownTask,
    UnknownWaiter,
)


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


def _f(body: dict[str, Any], key: str, default: Any = None) -> Any:
    return body.get(key, default)


_BUILDERS: dict[str, Any] = {
    "slot_timeout": lambda b: SlotTimeout(_f(b, "queue", "?"), float(_f(b, "waited_s", 0.0)), _f(b, "est_wait_s")),
    "queue_full": lambda b: QueueFull(_f(b, "queue", "?"), int(_f(b, "waiting", 0)), _f(b, "est_wait_s")),
    "unknown_queue": lambda b: UnknownQueue(_f(b, "name", "?")),
    "unknown_waiter": lambda b: UnknownWaiter(_f(b, "waiter_id", "?")),
    "unknown_job": lambda b: UnknownJob(_f(b, "job_id", "?")),
    "unknown_task": lambda b: UnknownTask(_f(b, "task", "?")),
    "lease_gone": lambda b: LeaseGone(_f(b, "lease_id", "?"), _f(b, "reason", "gone")),
    "wait_cancelled": lambda b: SlotCancelled(_f(b, "queue", "?"), _f(b, "reason", "cancelled")),
    "queue_busy": lambda b: QueueBusy(_f(b, "detail", "queue is busy")),
    "no_fitting_device": lambda b: NoFittingDevice(_f(b, "detail", "no device can fit this request")),
}


def error_from(response: httpx.Response) -> SlotDeckError:
    """The exception for an error response (problem+json or not)."""
    try:
        body = response.json()
        if not isinstance(body, dict):
            body = {}
    except ValueError:
        body = {}
    builder = _BUILDERS.get(str(body.get("code")))
    if builder is not None:
        return builder(body)
    if body.get("code") == "shutting_down" or (response.status_code in (502, 503, 504) and not body.get("code")):
        title = str(body.get("title") or response.reason_phrase or "unavailable")
        detail = body.get("detail") or ""
        message = f"{response.status_code} {title}" + (f": {detail}" if detail else "")
        return ServerUnavailable(message, _retry_after(response))
    title = str(body.get("title") or response.reason_phrase or "HTTP error")
    detail = body.get("detail") or (None if body else response.text[:500] or None)
    kind = AuthError if response.status_code in (401, 403) else ApiError
    return kind(response.status_code, title, detail, body.get("code"))
