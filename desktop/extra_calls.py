"""API calls the dashboard makes that the shared client does not (yet) offer, as `Call`s sent by its client.

Each tolerates an older server: `whoami` (None when the route is missing),
`queues_raw` (the queue items as plain dicts, with or without `overrides` /
`configured`), `retry_job` and `reset_fields` (an `ApiError` with status 404/405
that `older_server` recognises).
"""

from __future__ import annotations

from typing import Any

from embedded_service.client import AsyncClient
from embedded_service.client.calls import Call, _model, _q
from embedded_service.client.errors import ApiError
from embedded_service.model import Job

MISSING_ROUTE = frozenset({404, 405})


def older_server(exc: Exception) -> bool:
    """True when `exc` says the server has no such route: a plain 404 or a 405 (an unknown job or queue
    raises its own error type, not `ApiError`)."""
    return isinstance(exc, ApiError) and exc.status in MISSING_ROUTE


async def whoami(client: AsyncClient) -> dict[str, str] | None:
    """`{"name": ..., "role": ...}` of the connection's token; None from a server without the route."""
    try:
        answer = await client._send(Call("GET", "/v1/whoami", lambda r: dict(r.json())))
    except ApiError as exc:
        if older_server(exc):
            return None
        raise
    return {"name": str(answer.get("name", "")), "role": str(answer.get("role", ""))}


async def queues_raw(client: AsyncClient) -> list[dict[str, Any]]:
    """GET /v1/queues as plain dicts (newer servers add `overrides` and `configured` to each)."""
    return await client._send(Call("GET", "/v1/queues", lambda r: list(r.json())))


async def retry_job(client: AsyncClient, job_id: str) -> Job:
    """POST /v1/jobs/{id}/retry: a new job with the same spec (201)."""
    return await client._send(Call("POST", f"/v1/jobs/{_q(job_id)}/retry", _model(Job)))


async def reset_fields(client: AsyncClient, queue: str, fields: list[str]) -> None:
    """POST /v1/queues/{q}/reset-fields: these fields go back to their configured values."""
    await client._send(Call("POST", f"/v1/queues/{_q(queue)}/reset-fields", lambda r: None, body={"fields": fields}))


async def log_tail(client: AsyncClient, job_id: str, lines: int) -> str:
    """The last `lines` lines of a job's log (the server allows up to 100,000)."""
    return await client.job_log(job_id, tail=lines)
