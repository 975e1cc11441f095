"""The request/response mapping of every API operation, written once.

Each function returns a `Call`: what to send and how to read the answer. The
async and the sync client only differ in how they send it, so the two can
never drift apart on paths, parameters or parsing.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from ..model import (
    AcquireResponse,
    AuditEntry,
    CommandSubmit,
    Health,
    History,
    Job,
    JobLogPage,
    JobPage,
    JobState,
    LeaseInfo,
    QueueConfig,
    QueueStats,
    QueueStatsView,
    QueueView,
    Snapshot,
    TaskSubmit,
    TokenInfo,
    WaiterInfo,
)
from .lease import RENEW_FRACTION

T = TypeVar("T")

CONNECT_SLACK_S = 10.0  # added to a long-poll's wait for the HTTP timeout
GIVE_UP_SLACK_S = 5.0  # an acquire with timeout_s gives up on a silent server this long after its timeout
# a job cancel is answered once the job's processes are gone: after the server's kill grace (10 s by default)
# when they ignore SIGTERM, so the plain request timeout would report a reachable server as unreachable
CANCEL_WAIT_S = 120.0


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    body: Any = None
    timeout: float | None = None  # None: the client's default
    headers: dict[str, str] | None = None

    def request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.headers:
            kwargs["headers"] = self.headers
        if self.params:
            kwargs["params"] = {k: v for k, v in self.params.items() if v is not None}
        if self.body is not None:
            kwargs["json"] = self.body
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return kwargs


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One server-sent event: `snapshot`, `lease`, `job`, `prune` or `audit`; `id` is what to resume from."""

    id: str | None
    type: str
    data: dict[str, Any]


class SseParser:
    """Turns the lines of a text/event-stream into ServerEvents."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._type = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> ServerEvent | None:
        if line == "":
            if not self._data:
                return None
            event = ServerEvent(self._id, self._type, json.loads("\n".join(self._data)))
            self._id, self._type, self._data = None, "message", []
            return event
        if line.startswith(":"):
            return None
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "id":
            self._id = value
        elif key == "event":
            self._type = value
        elif key == "data":
            self._data.append(value)
        return None


def _model(model: type[T]) -> Callable[[httpx.Response], T]:
    adapter = TypeAdapter(model)
    return lambda response: adapter.validate_json(response.content)


def _nothing(_: httpx.Response) -> None:
    return None


def _text(response: httpx.Response) -> str:
    return response.text


def _q(name: str) -> str:
    return quote(name, safe="")


def _fields(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# ------------------------------------------------------------------ observe


def health() -> Call[Health]:
    return Call("GET", "/v1/health", _model(Health))


def snapshot() -> Call[Snapshot]:
    return Call("GET", "/v1/snapshot", _model(Snapshot))


def history(seconds: float) -> Call[History]:
    return Call("GET", "/v1/history", _model(History), params={"seconds": seconds})


def audit(limit: int, before_id: int | None) -> Call[list[AuditEntry]]:
    return Call("GET", "/v1/audit", _model(list[AuditEntry]), params={"limit": limit, "before_id": before_id})


def metrics() -> Call[str]:
    return Call("GET", "/metrics", _text)


# ------------------------------------------------------------------- queues


def queues() -> Call[list[QueueView]]:
    return Call("GET", "/v1/queues", _model(list[QueueView]))


def queue(name: str) -> Call[QueueStatsView]:
    return Call("GET", f"/v1/queues/{_q(name)}", _model(QueueStatsView))


def configure_queue(name: str, fields: dict[str, Any]) -> Call[QueueConfig]:
    return Call("PUT", f"/v1/queues/{_q(name)}", _model(QueueConfig), body=fields)


def update_queue(name: str, fields: dict[str, Any]) -> Call[QueueConfig]:
    return Call("PATCH", f"/v1/queues/{_q(name)}", _model(QueueConfig), body=fields)


def delete_queue(name: str, force: bool) -> Call[None]:
    return Call("DELETE", f"/v1/queues/{_q(name)}", _nothing, params={"force": str(force).lower()})


def queue_action(name: str, action: str) -> Call[QueueConfig]:
    return Call("POST", f"/v1/queues/{_q(name)}/{action}", _model(QueueConfig))


def reset_marks(name: str) -> Call[QueueStats]:
    return Call("POST", f"/v1/queues/{_q(name)}/reset-marks", _model(QueueStats))


def reset_fields(name: str, fields: list[str]) -> Call[QueueView]:
    return Call("POST", f"/v1/queues/{_q(name)}/reset-fields", _model(QueueView), body={"fields": fields})


# ------------------------------------------------------------------- leases


def acquire(queue: str, request: dict[str, Any], wait_s: float) -> Call[AcquireResponse]:
    return Call(
        "POST",
        f"/v1/queues/{_q(queue)}/leases",
        _model(AcquireResponse),
        body={**request, "wait_s": wait_s},
        timeout=wait_s + CONNECT_SLACK_S,
    )


def renew(lease_id: str, ttl_s: float | None = None) -> Call[LeaseInfo]:
    return Call("POST", f"/v1/leases/{_q(lease_id)}/renew", _model(LeaseInfo), body=_fields(ttl_s=ttl_s))


def release(lease_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/leases/{_q(lease_id)}", _nothing)


def revoke(lease_id: str) -> Call[LeaseInfo]:
    return Call("POST", f"/v1/leases/{_q(lease_id)}/revoke", _model(LeaseInfo))


def cancel_waiter(waiter_id: str) -> Call[WaiterInfo]:
    return Call("POST", f"/v1/waiters/{_q(waiter_id)}/cancel", _model(WaiterInfo))


# --------------------------------------------------------------------- jobs


# A submit whose connection broke may or may not have been committed: it is sent again with the same
# Idempotency-Key, so the server answers with the job it made (if any) instead of making a second one.
SUBMIT_RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0)


def idempotency_key() -> str:
    """A fresh key for one submit (sent again, unchanged, on its retries)."""
    return uuid.uuid4().hex


def submit_task(task: str, idempotency_key: str | None = None, **fields: Any) -> Call[Job]:
    body = TaskSubmit(task=task, **_fields(**fields)).model_dump(mode="json", exclude_defaults=True)
    return Call("POST", "/v1/jobs", _model(Job), body=body, headers=_idempotent(idempotency_key))


def submit_command(argv: list[str], idempotency_key: str | None = None, **fields: Any) -> Call[Job]:
    body = CommandSubmit(argv=argv, **_fields(**fields)).model_dump(mode="json", exclude_defaults=True)
    return Call("POST", "/v1/jobs", _model(Job), body=body, headers=_idempotent(idempotency_key))


def _idempotent(key: str | None) -> dict[str, str] | None:
    return {"Idempotency-Key": key} if key else None


def jobs(
    state: JobState | str | None, queue: str | None, owner: str | None, limit: int, cursor: str | None
) -> Call[JobPage]:
    params = {
        "state": JobState(state).value if state else None,
        "queue": queue,
        "owner": owner,
        "limit": limit,
        "cursor": cursor,
    }
    return Call("GET", "/v1/jobs", _model(JobPage), params=params)


def job(job_id: str) -> Call[Job]:
    return Call("GET", f"/v1/jobs/{_q(job_id)}", _model(Job))


def cancel_job(job_id: str) -> Call[Job]:
    """Answered once the job has stopped; waits up to `CANCEL_WAIT_S` whatever the client's request timeout."""
    return Call("POST", f"/v1/jobs/{_q(job_id)}/cancel", _model(Job), timeout=CANCEL_WAIT_S)


def retry_job(job_id: str) -> Call[Job]:
    return Call("POST", f"/v1/jobs/{_q(job_id)}/retry", _model(Job))


def job_log(job_id: str, tail: int) -> Call[str]:
    return Call("GET", f"/v1/jobs/{_q(job_id)}/log", _text, params={"tail": tail})


def follow_log(job_id: str, tail: int, after: int | None = None) -> Call[None]:
    params = {"tail": tail, "follow": "true", "after": after}
    return Call("GET", f"/v1/jobs/{_q(job_id)}/log", _nothing, params=params)


def job_log_page(job_id: str, before: int | None, max_bytes: int) -> Call[JobLogPage]:
    params = {"before": before, "max_bytes": max_bytes}
    return Call("GET", f"/v1/jobs/{_q(job_id)}/log/page", _model(JobLogPage), params=params)


def events(
    last_event_id: str | None, types: Sequence[str] | None = None, snapshot_interval_s: float | None = None
) -> Call[None]:
    params = {"since": last_event_id, "types": ",".join(types) if types else None}
    return Call("GET", "/v1/events", _nothing, params=params | {"snapshot_interval_s": snapshot_interval_s or None})


# ------------------------------------------------------------------- tokens


def tokens() -> Call[list[TokenInfo]]:
    return Call("GET", "/v1/tokens", _model(list[TokenInfo]))


def create_token(name: str, role: str, replace: bool = False, confirm_self: bool = False) -> Call[dict[str, Any]]:
    body = {"name": name, "role": role, "replace": replace, "confirm_self": confirm_self}
    return Call("POST", "/v1/tokens", lambda r: dict(r.json()), body=body)


def delete_token(name: str, confirm_self: bool = False) -> Call[None]:
    params = {"confirm_self": "true"} if confirm_self else None
    return Call("DELETE", f"/v1/tokens/{_q(name)}", _nothing, params=params)


# ----------------------------------------------------------- acquire flow


def new_request_id() -> str:
    """A name for one acquire, made by the client so it can withdraw the request before any answer."""
    return "r" + secrets.token_urlsafe(15)


@dataclass(slots=True)
class AcquireFlow:
    """The long-poll loop of an acquire, as data: each answer says what to send next.

    The request carries a client-made `request_id`, so the caller can withdraw it at any
    moment (`abandon()`), a lost answer can be asked for again (`resume()`), and a request
    the server dropped can start over under a new name (`restart()`)."""

    queue: str
    request: dict[str, Any]
    poll_s: float = 20.0
    waiter_id: str | None = None
    waiter: WaiterInfo | None = field(default=None)
    request_id: str = field(default_factory=new_request_id)
    give_up_at: float | None = None  # monotonic: timeout_s after the start, if the request has one

    def __post_init__(self) -> None:
        timeout_s = self.request.get("timeout_s")
        if timeout_s is not None:
            self.give_up_at = time.monotonic() + timeout_s
        # A new lease's local deadline counts from when the poll that brought it was sent, so one poll may not
        # last longer than a renewal period of the lease's TTL: else a grant late in a long poll arrives lost.
        ttl_s = self.request.get("ttl_s")
        if ttl_s is not None:
            self.poll_s = min(self.poll_s, max(0.2, ttl_s * RENEW_FRACTION))

    def first(self) -> Call[AcquireResponse]:
        return self._poll({**self.request, "request_id": self.request_id})

    def _poll(self, body: dict[str, Any]) -> Call[AcquireResponse]:
        """One long-poll; a server that goes silent cannot hold it much past the caller's own `timeout_s`."""
        call = acquire(self.queue, body, self.poll_s)
        if self.give_up_at is not None and call.timeout is not None:
            bound = max(0.0, self.give_up_at - time.monotonic()) + GIVE_UP_SLACK_S
            if bound < call.timeout:
                call = replace(call, timeout=bound)
        return call

    def step(self, answer: AcquireResponse) -> Call[AcquireResponse] | LeaseInfo:
        """The lease when granted, else the next poll."""
        if answer.lease is not None:
            return answer.lease
        if answer.waiter is None:
            raise ValueError(f"acquire answered {answer.status!r} with neither lease nor waiter")
        self.waiter, self.waiter_id = answer.waiter, answer.waiter.id
        return self._poll({**self.request, "waiter_id": self.waiter_id})

    def resume(self) -> Call[AcquireResponse]:
        """Ask again under the same name (after a broken connection): the same waiter, or its lease."""
        self.waiter_id = None
        return self.first()

    def restart(self, timeout_s: float | None) -> Call[AcquireResponse]:
        """Start over under a new name (the server dropped the request, or restarted)."""
        self.request_id, self.waiter_id, self.waiter = new_request_id(), None, None
        if timeout_s is not None:
            self.request = {**self.request, "timeout_s": max(0.001, timeout_s)}
        return self.first()

    def abandon(self) -> Call[WaiterInfo]:
        """What to send when the caller gives up: withdraws the waiter, or releases a grant never received."""
        return cancel_waiter(self.request_id)


def acquire_request(
    owner: str | None, priority: int, gpus: int, gpu_mem_mib: int, timeout_s: float | None, ttl_s: float
) -> dict[str, Any]:
    return _fields(owner=owner, priority=priority, gpus=gpus, gpu_mem_mib=gpu_mem_mib, timeout_s=timeout_s, ttl_s=ttl_s)
