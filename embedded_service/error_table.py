"""One table from SlotDeck's error types to HTTP: status, problem title and code, and the way back.

The server answers each error with its row's status and `code` (`api.problems`), the clients raise
the row's error type again from that code (`client.errors`), and the CLI picks its exit code from the
row's status (`cli.exit_code`): change a row here and all three follow. The first row whose type
matches wins, so a subclass goes above its base.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import (
    IdempotencyKeyReused,
    LeaseGone,
    NoFittingDevice,
    NotInRedisMode,
    NotYours,
    QueueBusy,
    QueueFull,
    ServerUnavailable,
    SlotCancelled,
    SlotDeckError,
    SlotTimeout,
    StoreFault,
    UnknownJob,
    UnknownLease,
    UnknownQueue,
    UnknownTask,
    UnknownWaiter,
)

# a problem body (its fields, `detail`, `status`, `title`) and the answer's Retry-After in seconds -> the error
Builder = Callable[[Mapping[str, Any], float], SlotDeckError]


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """`error` is answered with `status`, `title` and `code`; a client rebuilds it with `build` (None: the
    client raises its generic `ApiError`/`AuthError` for the status, as for any error without a row)."""

    error: type[SlotDeckError]
    status: int
    title: str
    code: str
    build: Builder | None = None


def _unavailable(body: Mapping[str, Any], retry_after_s: float) -> SlotDeckError:
    detail = body.get("detail") or ""
    message = f"{body.get('status', 503)} {body.get('title') or 'unavailable'}" + (f": {detail}" if detail else "")
    return ServerUnavailable(message, retry_after_s)


ERRORS: tuple[ErrorRow, ...] = (
    ErrorRow(StoreFault, 503, "Store unavailable", "store_failing"),
    ErrorRow(ServerUnavailable, 503, "Server is shutting down", "shutting_down", _unavailable),
    ErrorRow(
        SlotTimeout,
        503,
        "No slot before the timeout",
        "slot_timeout",
        lambda b, _: SlotTimeout(b.get("queue", "?"), float(b.get("waited_s", 0.0)), b.get("est_wait_s")),
    ),
    ErrorRow(
        QueueFull,
        503,
        "Queue is full",
        "queue_full",
        lambda b, _: QueueFull(b.get("queue", "?"), int(b.get("waiting", 0)), b.get("est_wait_s")),
    ),
    ErrorRow(UnknownQueue, 404, "Unknown queue", "unknown_queue", lambda b, _: UnknownQueue(b.get("name", "?"))),
    ErrorRow(UnknownWaiter, 404, "Unknown waiter", "unknown_waiter", lambda b, _: UnknownWaiter(b.get("waiter_id", "?"))),
    ErrorRow(UnknownJob, 404, "Unknown job", "unknown_job", lambda b, _: UnknownJob(b.get("job_id", "?"))),
    ErrorRow(UnknownTask, 404, "Unknown task", "unknown_task", lambda b, _: UnknownTask(b.get("task", "?"))),
    ErrorRow(UnknownLease, 404, "Unknown lease", "unknown_lease"),
    ErrorRow(
        LeaseGone,
        410,
        "Lease is gone",
        "lease_gone",
        lambda b, _: LeaseGone(b.get("lease_id", "?"), b.get("reason", "gone")),
    ),
    ErrorRow(IdempotencyKeyReused, 422, "Idempotency-Key reused", "idempotency_key_reused"),
    ErrorRow(NotYours, 403, "Not yours", "forbidden"),
    ErrorRow(
        SlotCancelled,
        409,
        "Wait was cancelled",
        "wait_cancelled",
        lambda b, _: SlotCancelled(b.get("queue", "?"), b.get("reason", "cancelled")),
    ),
    ErrorRow(NotInRedisMode, 409, "Not available in redis mode", "not_in_redis_mode"),
    ErrorRow(QueueBusy, 409, "Queue is busy", "queue_busy", lambda b, _: QueueBusy(b.get("detail", "queue is busy"))),
    ErrorRow(
        NoFittingDevice,
        409,
        "No device can fit this request",
        "no_fitting_device",
        lambda b, _: NoFittingDevice(b.get("detail", "no device can fit this request")),
    ),
)


def row_for(exc: BaseException) -> ErrorRow | None:
    """The row of an error (the first whose type it is), None for an error without one."""
    return next((row for row in ERRORS if isinstance(exc, row.error)), None)


def row_for_code(code: object) -> ErrorRow | None:
    """The row a problem's `code` names (the client's way back), None for an unknown code."""
    return next((row for row in ERRORS if row.code == code), None)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an error is answered with, None for an error without a row."""
    row = row_for(exc)
    return row.status if row is not None else None
