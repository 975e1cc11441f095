"""`AsyncClient`: everything the API offers, for asyncio code (and the desktop under qasync).

`slot()`, `acquire()` and `release()` have the shape of a local `SlotService`'s,
so code moves from one process to many by changing how the object is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import httpx

from ..errors import LeaseGone, ServerUnavailable, SlotCancelled, SlotDeckError
from ..model import (
    AuditEntry,
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
    TokenInfo,
    WaiterInfo,
)
from . import calls
from .calls import AcquireFlow, Call, ServerEvent, SseParser, acquire_request
from .errors import ApiError, ConnectionFailed, PoolExhausted
from .lease import RemoteLease
from .transport import (
    CONTROL_CONNECTIONS,
    MAX_CONNECTIONS,
    RETRY_S,
    SentAt,
    Verify,
    describe_failure,
    describe_pool,
    http_options,
    read,
    stream_timeout,
)

log = logging.getLogger("slotdeck.client")

T = TypeVar("T")

EVENTS_READ_S = 30.0  # snapshots come at least every second: 30 s of silence means a dead connection


class AsyncClient:
    """`AsyncClient(url, token)`; HTTP errors raise the matching SlotDeck errors, transport failures
    `ConnectionFailed`, a draining/restarting server `ServerUnavailable`, a busy connection pool `PoolExhausted`.

    Renewals and releases go over their own small connection pool, so they never wait behind
    long-polls. `retry=True`: `acquire()`/`slot()` retry `ServerUnavailable` and `ConnectionFailed`
    within their `timeout_s` (or `retry_s` when none is given)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        verify: Verify = True,
        timeout: float = 10.0,
        poll_s: float = 20.0,
        retry: bool = True,
        retry_s: float = RETRY_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.poll_s = poll_s
        self.retry_waits = retry  # not `retry`: that is the job method
        self.retry_s = retry_s
        self._http = httpx.AsyncClient(**http_options(base_url, token, verify, timeout, max_connections))
        self._control = httpx.AsyncClient(**http_options(base_url, token, verify, timeout, CONTROL_CONNECTIONS))
        self._renewals: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._held: dict[str, RemoteLease] = {}
        self._waiting: dict[int, AcquireFlow] = {}  # acquires in progress, withdrawn by close()

    async def _send(self, call: Call[T], http: httpx.AsyncClient | None = None, sent: SentAt | None = None) -> T:
        http = http or self._http
        kwargs = call.request_kwargs()
        if sent is not None:
            kwargs["extensions"] = {"trace": sent.atrace}
        try:
            response = await http.request(call.method, call.path, **kwargs)
        except httpx.PoolTimeout as exc:
            raise PoolExhausted(describe_pool(self.base_url, http is self._control)) from exc
        except httpx.TransportError as exc:
            raise ConnectionFailed(describe_failure(self.base_url, exc)) from exc
        return read(call, response)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        """A background call (withdraw, release of a lost lease) that outlives a cancelled caller; close() awaits it."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _quietly(self, call: Call[Any]) -> None:
        with contextlib.suppress(SlotDeckError, TimeoutError):
            async with asyncio.timeout(self.timeout):
                await self._send(call, self._control)

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
        """Release every lease still held (best effort, bounded by `timeout`), then close the connections."""
        waiting = list(self._waiting.values())
        self._waiting.clear()
        if waiting:  # before the releases below, which could grant these very requests
            await asyncio.gather(*(self._quietly(flow.abandon()) for flow in waiting))
        held = [lease for lease in self._held.values() if lease.held]
        for lease in held:
            if lease._stop is not None:
                lease._stop()
            lease.released = True
        if held:
            await asyncio.gather(*(self._quietly(calls.release(lease.id)) for lease in held))
        for task in list(self._renewals):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=self.timeout)
        self._held.clear()
        await self._http.aclose()
        await self._control.aclose()

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
        self,
        last_event_id: str | None = None,
        types: Sequence[str] | None = None,
        snapshot_interval_s: float | None = None,
    ) -> AsyncIterator[ServerEvent]:
        """Server-sent events until the server ends the stream; resume with the last event's `id`.
        `types` picks some of "snapshot", "lease", "job", "prune", "audit" (default: all);
        `snapshot_interval_s` (up to 10) asks for at most one snapshot, the newest, per that many seconds
        (a server older than that option sends every snapshot)."""
        parser = SseParser()
        async for line in self._lines(calls.events(last_event_id, types, snapshot_interval_s), EVENTS_READ_S):
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
        on_lost: Callable[[RemoteLease], Any] | None = None,
    ) -> RemoteLease:
        """Wait for a slot (long-polling) and keep the lease alive until `release()`.

        A caller that gives up (cancelled, timed out) withdraws its request at once, also before
        the first answer. `on_lost(lease)` runs once if the lease is lost while held."""
        flow = AcquireFlow(queue, acquire_request(owner, priority, gpus, gpu_mem_mib, timeout_s, ttl_s), self.poll_s)
        give_up_at = time.monotonic() + (timeout_s if timeout_s is not None else self.retry_s)
        call, backoff, resumed = flow.first(), 0.1, False
        self._waiting[id(flow)] = flow
        try:
            while True:
                sent = SentAt()
                try:
                    step = flow.step(await self._send(call, sent=sent))
                except PoolExhausted:
                    continue  # the request never left: waiting for a connection is part of waiting
                except (ConnectionFailed, ServerUnavailable) as exc:
                    left = give_up_at - time.monotonic()
                    if not self.retry_waits or left <= backoff:
                        raise
                    pause = max(backoff, exc.retry_after_s if isinstance(exc, ServerUnavailable) else 0.0)
                    log.warning("acquire in %s: %s; retrying in %.1fs", queue, exc, min(pause, left))
                    await asyncio.sleep(min(pause, left - 0.05))
                    backoff = min(backoff * 2, 2.0)
                    remaining = give_up_at - time.monotonic() if timeout_s is not None else None
                    call, resumed = (
                        (flow.resume(), True) if isinstance(exc, ConnectionFailed) else (flow.restart(remaining), False)
                    )
                    continue
                except SlotCancelled:
                    if not resumed:
                        raise
                    call, resumed = flow.restart(give_up_at - time.monotonic() if timeout_s is not None else None), False
                    continue  # the server withdrew it when the connection broke: ask again
                resumed = False
                if isinstance(step, LeaseInfo):
                    break
                call = step
        except BaseException as exc:
            if not isinstance(exc, SlotDeckError) or isinstance(exc, (ConnectionFailed, ServerUnavailable, PoolExhausted)):
                self._spawn(self._quietly(flow.abandon()))  # shielded from the caller's cancel
            raise
        finally:
            self._waiting.pop(id(flow), None)
        return self._hold(RemoteLease(step, ttl_s, sent.at, on_lost))

    def _hold(self, lease: RemoteLease) -> RemoteLease:
        self._held[lease.id] = lease
        task = asyncio.create_task(self._keep_alive(lease), name=f"slotdeck-renew-{lease.id}")
        self._renewals.add(task)
        task.add_done_callback(self._renewals.discard)
        lease._stop = task.cancel
        return lease

    async def _keep_alive(self, lease: RemoteLease) -> None:
        """Renew on schedule; mark the lease lost on a 410/404 or when its local deadline passes unconfirmed."""
        try:
            while lease.held:
                now = time.monotonic()
                if now >= lease.deadline:
                    self._lost(lease, "no renewal was confirmed within its TTL")
                    return
                wait = min(lease.next_renew_at, lease.deadline) - now
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                sent = SentAt()
                try:
                    async with asyncio.timeout(max(0.01, lease.deadline - sent.at)):
                        info = await self._send(calls.renew(lease.id), self._control, sent)
                except LeaseGone as exc:
                    self._lost(lease, exc.reason)
                    return
                except ApiError as exc:
                    if exc.status == 404:
                        self._lost(lease, "the server does not know this lease (it restarted without it)")
                        return
                    log.warning("renewing lease %s failed (will retry until its deadline): %s", lease.id, exc)
                    lease.failed(time.monotonic())
                except (SlotDeckError, TimeoutError) as exc:
                    log.warning("renewing lease %s failed (will retry until its deadline): %s", lease.id, exc or "timeout")
                    lease.failed(time.monotonic())
                else:
                    lease.confirmed(info, sent.at)
        finally:
            if not lease.held:
                self._held.pop(lease.id, None)

    def _lost(self, lease: RemoteLease, reason: str) -> None:
        if lease.mark_lost(reason):
            self._spawn(self._quietly(calls.release(lease.id)))  # if the server still counts it, free it now

    async def release(self, lease: RemoteLease | str) -> None:
        """Give the slot back (idempotent)."""
        if isinstance(lease, RemoteLease):
            if lease._stop is not None:
                lease._stop()
            lease.released = True
            self._held.pop(lease.id, None)
            lease_id = lease.id
        else:
            lease_id = lease
        await self._send(calls.release(lease_id), self._control)

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
        self,
        task: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """Queue a registered task. Sent with an Idempotency-Key (a fresh one unless given) and sent again with it
        when the connection breaks, so a retried submit never makes a second job."""
        key = idempotency_key or calls.idempotency_key()
        return await self._submit(calls.submit_task(task, args=args, kwargs=kwargs, idempotency_key=key, **fields))

    async def submit_command(self, argv: list[str], *, idempotency_key: str | None = None, **fields: Any) -> Job:
        """Fields: queue, env, cwd, gpus, gpu_mem_mib, priority, max_runtime_s, max_attempts (retried as
        `submit_task` is)."""
        key = idempotency_key or calls.idempotency_key()
        return await self._submit(calls.submit_command(argv, idempotency_key=key, **fields))

    async def _submit(self, call: Call[Job]) -> Job:
        for delay in calls.SUBMIT_RETRY_DELAYS_S:
            try:
                return await self._send(call)
            except ConnectionFailed as exc:
                log.warning("submit failed (%s); sending it again with the same Idempotency-Key", exc)
                await asyncio.sleep(delay)
        return await self._send(call)

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

    async def retry(self, job_id: str) -> Job:
        """A new job with the spec of the finished job `job_id` (409 `ApiError` while it has not finished)."""
        return await self._send(calls.retry_job(job_id))

    async def job_log(self, job_id: str, tail: int = 200) -> str:
        return await self._send(calls.job_log(job_id, tail))

    async def job_log_page(self, job_id: str, before: int | None = None, max_bytes: int = 256 * 1024) -> JobLogPage:
        """Whole lines of the log ending at log position `before` (None: the end), cut where attempts began."""
        return await self._send(calls.job_log_page(job_id, before, max_bytes))

    async def follow_log(self, job_id: str, tail: int = 200, after: int | None = None) -> AsyncIterator[str]:
        """The log's last lines (or, with `after`, what follows that log position), then new ones as they are
        written, until the job ends."""
        async for line in self._lines(calls.follow_log(job_id, tail, after), None):
            yield line

    # ------------------------------------------------------------- tokens

    async def tokens(self) -> list[TokenInfo]:
        return await self._send(calls.tokens())

    async def create_token(self, name: str, role: str, replace: bool = False, confirm_self: bool = False) -> dict[str, Any]:
        """A new token (shown once); a name that exists needs `replace`, the caller's own `confirm_self`."""
        return await self._send(calls.create_token(name, role, replace, confirm_self))

    async def delete_token(self, name: str, confirm_self: bool = False) -> None:
        """Revoke a token; the caller's own needs `confirm_self`."""
        await self._send(calls.delete_token(name, confirm_self))


class _AsyncSlot:
    """`async with client.slot(...) as lease:` - a lost lease cancels the body, which then raises `LeaseLost`."""

    def __init__(self, client: AsyncClient, queue: str, kwargs: dict[str, Any]) -> None:
        self._client = client
        self._queue = queue
        self._kwargs = kwargs
        self.lease: RemoteLease | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    async def __aenter__(self) -> RemoteLease:
        lease = await self._client.acquire(self._queue, **self._kwargs)
        self._task = asyncio.current_task()
        lease._cancel_body = self._cancel
        self.lease = lease
        if lease.lost is not None:  # lost before the body started
            self._cancel()
        return lease

    def _cancel(self) -> None:
        if self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel(msg="slotdeck lease lost")

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        lease, self.lease = self.lease, None
        if lease is None:
            return
        lease._cancel_body = None
        if lease.lost is None:
            try:
                await self._client.release(lease)
            except (ConnectionFailed, ServerUnavailable, PoolExhausted) as error:
                log.warning("releasing lease %s failed (it expires on its own): %s", lease.id, error)
            except (LeaseGone, ApiError) as error:
                if isinstance(error, ApiError) and error.status != 404:
                    raise
                log.warning("releasing lease %s: the server no longer knows it: %s", lease.id, error)
        if self._cancelled and self._task is not None:
            ours = self._task.uncancel() == 0  # no one else cancelled the task too
            if ours and (exc_type is None or issubclass(exc_type, asyncio.CancelledError)):
                raise lease.error() from exc
        if lease.lost is not None and exc_type is None:
            raise lease.error()
