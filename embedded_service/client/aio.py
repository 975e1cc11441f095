"""`AsyncClient`: everything the API offers, for asyncio code (and the desktop under qasync).

`slot()`, `acquire()` and `release()` have the shape of a local `SlotService`'s,
so code moves from one process to many by changing how the object is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import httpx

from ..errors import LeaseGone, SlotDeckError
from ..model import (
    AuditEntry,
    Health,
    History,
    Job,
    JobPage,
    JobState,
    LeaseInfo,
    QueueConfig,
    QueueStats,
    QueueStatsView,
    QueueView,
    Snapshot,
    TokenInfo,
    WaiterInfo,
)
from . import calls
from .calls import AcquireFlow, Call, ServerEvent, SseParser, acquire_request
from .errors import ApiError, ConnectionFailed
from .lease import RemoteLease
from .transport import Verify, describe_failure, http_options, read, stream_timeout

log = logging.getLogger("slotdeck.client")

T = TypeVar("T")

EVENTS_READ_S = 30.0  # snapshots come at least every second: 30 s of silence means a dead connection


class AsyncClient:
    """`AsyncClient(url, token)`; HTTP errors raise the matching SlotDeck errors, transport failures `ConnectionFailed`."""

    def __init__(
        self, base_url: str, token: str | None = None, *, verify: Verify = True, timeout: float = 10.0, poll_s: float = 20.0
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.poll_s = poll_s
        self._http = httpx.AsyncClient(**http_options(base_url, token, verify, timeout))
        self._renewals: set[asyncio.Task[None]] = set()

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, **call.request_kwargs())
        except httpx.TransportError as exc:
            raise ConnectionFailed(describe_failure(self.base_url, exc)) from exc
        return read(call, response)

    async def _lines(self, call: Call[Any], read_s: float | None) -> AsyncIterator[str]:
        kwargs = call.request_kwargs()
        kwargs["timeout"] = stream_timeout(self.timeout, read_s)
        try:
            async with self._http.stream(call.method, call.path, **kwargs) as response:
                if response.status_code >= 400:
                    await response.aread()
                    read(call, response)
                async for line in response.aiter_lines():
                    yield line
        except httpx.TransportError as exc:
            raise ConnectionFailed(describe_failure(self.base_url, exc)) from exc

    async def close(self) -> None:
        for task in list(self._renewals):
            task.cancel()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ observe

    async def health(self) -> Health:
        return await self._send(calls.health())

    async def snapshot(self) -> Snapshot:
        return await self._send(calls.snapshot())

    async def history(self, seconds: float = 600) -> History:
        return await self._send(calls.history(seconds))

    async def audit(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        return await self._send(calls.audit(limit, before_id))

    async def metrics(self) -> str:
        return await self._send(calls.metrics())

    async def events(
        self, last_event_id: str | None = None, types: Sequence[str] | None = None
    ) -> AsyncIterator[ServerEvent]:
        """Server-sent events until the server ends the stream; resume with the last event's `id`.
        `types` picks some of "snapshot", "lease", "job", "prune", "audit" (default: all)."""
        parser = SseParser()
        async for line in self._lines(calls.events(last_event_id, types), EVENTS_READ_S):
            event = parser.feed(line)
            if event is not None:
                yield event

    # ------------------------------------------------------------- queues

    async def queues(self) -> list[QueueView]:
        return await self._send(calls.queues())

    async def queue(self, name: str) -> QueueStatsView:
        return await self._send(calls.queue(name))

    async def configure_queue(self, name: str, **fields: Any) -> QueueConfig:
        return await self._send(calls.configure_queue(name, fields))

    async def update_queue(self, name: str, **fields: Any) -> QueueConfig:
        return await self._send(calls.update_queue(name, fields))

    async def delete_queue(self, name: str, force: bool = False) -> None:
        await self._send(calls.delete_queue(name, force))

    async def set_limit(self, name: str, limit: int) -> QueueConfig:
        return await self.update_queue(name, limit=limit)

    async def pause(self, name: str) -> QueueConfig:
        return await self._send(calls.queue_action(name, "pause"))

    async def resume(self, name: str) -> QueueConfig:
        return await self._send(calls.queue_action(name, "resume"))

    async def reset_marks(self, name: str) -> QueueStats:
        return await self._send(calls.reset_marks(name))

    async def reset_fields(self, name: str, fields: list[str]) -> QueueView:
        """Give fields back to code/config (their configured values) and drop the operator's overrides."""
        return await self._send(calls.reset_fields(name, fields))

    # ------------------------------------------------------------- leases

    async def acquire(
        self,
        queue: str,
        *,
        owner: str | None = None,
        priority: int = 0,
        gpus: int = 0,
        gpu_mem_mib: int = 0,
        timeout_s: float | None = None,
        ttl_s: float = 30.0,
    ) -> RemoteLease:
        """Wait for a slot (long-polling) and keep the lease alive until `release()`."""
        flow = AcquireFlow(queue, acquire_request(owner, priority, gpus, gpu_mem_mib, timeout_s, ttl_s), self.poll_s)
        call = flow.first()
        try:
            while not isinstance(step := flow.step(await self._send(call)), LeaseInfo):
                call = step
        except BaseException as exc:
            abandon = flow.abandon()
            if abandon is not None and (not isinstance(exc, SlotDeckError) or isinstance(exc, ConnectionFailed)):
                with contextlib.suppress(SlotDeckError):
                    await asyncio.shield(self._send(abandon))
            raise
        lease = RemoteLease(step, ttl_s)
        task = asyncio.create_task(self._keep_alive(lease), name=f"slotdeck-renew-{lease.id}")
        self._renewals.add(task)
        task.add_done_callback(self._renewals.discard)
        lease._stop = task.cancel
        return lease

    async def _keep_alive(self, lease: RemoteLease) -> None:
        while True:
            await asyncio.sleep(lease.renew_every_s)
            try:
                lease.info = await self._send(calls.renew(lease.id))
            except LeaseGone as exc:
                lease.mark_lost(exc.reason)
                return
            except SlotDeckError as exc:
                log.warning("renewing lease %s failed (will retry): %s", lease.id, exc)

    async def release(self, lease: RemoteLease | str) -> None:
        """Give the slot back (idempotent)."""
        if isinstance(lease, RemoteLease):
            if lease._stop is not None:
                lease._stop()
            lease.released = True
            lease_id = lease.id
        else:
            lease_id = lease
        await self._send(calls.release(lease_id))

    def slot(self, queue: str, **kwargs: Any) -> _AsyncSlot:
        """`async with client.slot("chat", owner=...) as lease:`; a revoked lease cancels the body, as locally."""
        return _AsyncSlot(self, queue, kwargs)

    async def renew(self, lease_id: str, ttl_s: float | None = None) -> LeaseInfo:
        return await self._send(calls.renew(lease_id, ttl_s))

    async def revoke(self, lease_id: str) -> LeaseInfo:
        return await self._send(calls.revoke(lease_id))

    async def cancel_waiter(self, waiter_id: str) -> WaiterInfo:
        return await self._send(calls.cancel_waiter(waiter_id))

    # --------------------------------------------------------------- jobs

    async def submit_task(
        self, task: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None, **fields: Any
    ) -> Job:
        return await self._send(calls.submit_task(task, args=args, kwargs=kwargs, **fields))

    async def submit_command(self, argv: list[str], **fields: Any) -> Job:
        """Fields: queue, env, cwd, gpus, gpu_mem_mib, priority, max_runtime_s, max_attempts."""
        return await self._send(calls.submit_command(argv, **fields))

    async def jobs(
        self,
        state: JobState | str | None = None,
        queue: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        return await self._send(calls.jobs(state, queue, owner, limit, cursor))

    async def job(self, job_id: str) -> Job:
        return await self._send(calls.job(job_id))

    async def cancel_job(self, job_id: str) -> Job:
        return await self._send(calls.cancel_job(job_id))

    async def job_log(self, job_id: str, tail: int = 200) -> str:
        return await self._send(calls.job_log(job_id, tail))

    async def follow_log(self, job_id: str, tail: int = 200) -> AsyncIterator[str]:
        """The log's last lines, then new ones as they are written, until the job ends."""
        async for line in self._lines(calls.follow_log(job_id, tail), None):
            yield line

    # ------------------------------------------------------------- tokens

    async def tokens(self) -> list[TokenInfo]:
        return await self._send(calls.tokens())

    async def create_token(self, name: str, role: str) -> dict[str, Any]:
        return await self._send(calls.create_token(name, role))

    async def delete_token(self, name: str) -> None:
        await self._send(calls.delete_token(name))


class _AsyncSlot:
    def __init__(self, client: AsyncClient, queue: str, kwargs: dict[str, Any]) -> None:
        self._client = client
        self._queue = queue
        self._kwargs = kwargs
        self.lease: RemoteLease | None = None

    async def __aenter__(self) -> RemoteLease:
        lease = await self._client.acquire(self._queue, **self._kwargs)
        task = asyncio.current_task()
        if task is not None:
            lease.on_lost = task.cancel
        self.lease = lease
        return lease

    async def __aexit__(self, *exc: object) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.on_lost = None
            with contextlib.suppress(ConnectionFailed):
                try:
                    await self._client.release(lease)
                except ApiError as exc:
                    if exc.code != "unknown_lease":
                        raise
                    log.warning("lease %s was unknown to the server at release (it restarted?): %s", lease.id, exc)
