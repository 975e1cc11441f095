"""`Client`: the blocking twin of `AsyncClient` (same method names, same calls), for scripts,
WSGI views and worker threads. Leases are renewed by a small daemon thread each."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
from .aio import EVENTS_READ_S
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

ABANDON_S = 2.0  # how long a caller that gives up waits for its withdrawal to be confirmed

T = TypeVar("T")


class Client:
    """`Client(url, token)`; the blocking twin of `AsyncClient`, with the same errors and options."""

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
        self._http = httpx.Client(**http_options(base_url, token, verify, timeout, max_connections))
        self._control = httpx.Client(**http_options(base_url, token, verify, timeout, CONTROL_CONNECTIONS))
        self._held: dict[str, RemoteLease] = {}
        self._waiting: dict[int, AcquireFlow] = {}  # acquires in progress, withdrawn by close()
        self._lock = threading.Lock()

    def _send(
        self, call: Call[T], http: httpx.Client | None = None, timeout: float | None = None, sent: SentAt | None = None
    ) -> T:
        http = http or self._http
        kwargs = call.request_kwargs()
        if timeout is not None:
            kwargs["timeout"] = timeout
        if sent is not None:
            kwargs["extensions"] = {"trace": sent.trace}
        try:
            response = http.request(call.method, call.path, **kwargs)
        except httpx.PoolTimeout as exc:
            raise PoolExhausted(describe_pool(self.base_url, http is self._control)) from exc
        except httpx.TransportError as exc:
            raise ConnectionFailed(describe_failure(self.base_url, exc)) from exc
        return read(call, response)

    def _quietly(self, call: Call[Any], timeout: float | None = None) -> None:
        with contextlib.suppress(SlotDeckError):
            self._send(call, self._control, timeout)

    def _lines(self, call: Call[Any], read_s: float | None) -> Iterator[str]:
        kwargs = call.request_kwargs()
        kwargs["timeout"] = stream_timeout(self.timeout, read_s)
        try:
            with self._http.stream(call.method, call.path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    read(call, response)
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise ConnectionFailed(describe_failure(self.base_url, exc)) from exc

    def close(self) -> None:
        """Release every lease still held (best effort, bounded by `timeout`), then close the connections."""
        with self._lock:
            waiting = list(self._waiting.values())
            self._waiting.clear()
            held = [lease for lease in self._held.values() if lease.held]
            self._held.clear()
        for flow in waiting:  # before the releases below, which could grant these very requests
            self._quietly(flow.abandon())
        for lease in held:
            if lease._stop is not None:
                lease._stop()
            lease.released = True
            self._quietly(calls.release(lease.id))
        self._http.close()
        self._control.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ observe

    def health(self) -> Health:
        return self._send(calls.health())

    def snapshot(self) -> Snapshot:
        return self._send(calls.snapshot())

    def history(self, seconds: float = 600) -> History:
        return self._send(calls.history(seconds))

    def audit(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        return self._send(calls.audit(limit, before_id))

    def metrics(self) -> str:
        return self._send(calls.metrics())

    def events(
        self,
        last_event_id: str | None = None,
        types: Sequence[str] | None = None,
        snapshot_interval_s: float | None = None,
    ) -> Iterator[ServerEvent]:
        """Server-sent events until the server ends the stream; resume with the last event's `id`.
        `types` picks some of "snapshot", "lease", "job", "prune", "audit" (default: all);
        `snapshot_interval_s` (up to 10) asks for at most one snapshot, the newest, per that many seconds
        (a server older than that option sends every snapshot)."""
        parser = SseParser()
        for line in self._lines(calls.events(last_event_id, types, snapshot_interval_s), EVENTS_READ_S):
            event = parser.feed(line)
            if event is not None:
                yield event

    # ------------------------------------------------------------- queues

    def queues(self) -> list[QueueView]:
        return self._send(calls.queues())

    def queue(self, name: str) -> QueueStatsView:
        return self._send(calls.queue(name))

    def configure_queue(self, name: str, **fields: Any) -> QueueConfig:
        return self._send(calls.configure_queue(name, fields))

    def update_queue(self, name: str, **fields: Any) -> QueueConfig:
        return self._send(calls.update_queue(name, fields))

    def delete_queue(self, name: str, force: bool = False) -> None:
        self._send(calls.delete_queue(name, force))

    def set_limit(self, name: str, limit: int) -> QueueConfig:
        return self.update_queue(name, limit=limit)

    def pause(self, name: str) -> QueueConfig:
        return self._send(calls.queue_action(name, "pause"))

    def resume(self, name: str) -> QueueConfig:
        return self._send(calls.queue_action(name, "resume"))

    def reset_marks(self, name: str) -> QueueStats:
        return self._send(calls.reset_marks(name))

    def reset_fields(self, name: str, fields: list[str]) -> QueueView:
        """Give fields back to code/config (their configured values) and drop the operator's overrides."""
        return self._send(calls.reset_fields(name, fields))

    # ------------------------------------------------------------- leases

    def acquire(
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

        A caller interrupted while waiting withdraws its request. `on_lost(lease)` runs once, from
        the renewal thread, if the lease is lost while held."""
        flow = AcquireFlow(queue, acquire_request(owner, priority, gpus, gpu_mem_mib, timeout_s, ttl_s), self.poll_s)
        give_up_at = time.monotonic() + (timeout_s if timeout_s is not None else self.retry_s)
        call, backoff, resumed = flow.first(), 0.1, False
        with self._lock:
            self._waiting[id(flow)] = flow
        try:
            while True:
                sent = SentAt()
                try:
                    step = flow.step(self._send(call, sent=sent))
                except PoolExhausted:
                    continue
                except (ConnectionFailed, ServerUnavailable) as exc:
                    left = give_up_at - time.monotonic()
                    if not self.retry_waits or left <= backoff:
                        raise
                    pause = max(backoff, exc.retry_after_s if isinstance(exc, ServerUnavailable) else 0.0)
                    log.warning("acquire in %s: %s; retrying in %.1fs", queue, exc, min(pause, left))
                    time.sleep(min(pause, left - 0.05))
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
                    continue
                resumed = False
                if isinstance(step, LeaseInfo):
                    break
                call = step
        except BaseException as exc:
            if not isinstance(exc, SlotDeckError) or isinstance(exc, (ConnectionFailed, ServerUnavailable, PoolExhausted)):
                # bounded: a silent server must not hold the caller past its timeout (unpolled waiters and
                # unclaimed grants end on the server within seconds anyway)
                self._quietly(flow.abandon(), timeout=min(self.timeout, ABANDON_S))
            raise
        finally:
            with self._lock:
                self._waiting.pop(id(flow), None)
        lease = RemoteLease(step, ttl_s, sent.at, on_lost)
        stop = threading.Event()
        lease._stop = stop.set
        with self._lock:
            self._held[lease.id] = lease
        threading.Thread(target=self._keep_alive, args=(lease, stop), name=f"slotdeck-renew-{lease.id}", daemon=True).start()
        return lease

    def _keep_alive(self, lease: RemoteLease, stop: threading.Event) -> None:
        """Renew on schedule; mark the lease lost on a 410/404 or when its local deadline passes unconfirmed."""
        try:
            while lease.held and not stop.is_set():
                now = time.monotonic()
                if now >= lease.deadline:
                    self._lost(lease, "no renewal was confirmed within its TTL")
                    return
                wait = min(lease.next_renew_at, lease.deadline) - now
                if wait > 0:
                    stop.wait(wait)
                    continue
                sent = SentAt()
                try:
                    info = self._send(calls.renew(lease.id), self._control, max(0.01, lease.deadline - sent.at), sent)
                except LeaseGone as exc:
                    self._lost(lease, exc.reason)
                    return
                except ApiError as exc:
                    if exc.status == 404:
                        self._lost(lease, "the server does not know this lease (it restarted without it)")
                        return
                    log.warning("renewing lease %s failed (will retry until its deadline): %s", lease.id, exc)
                    lease.failed(time.monotonic())
                except SlotDeckError as exc:
                    log.warning("renewing lease %s failed (will retry until its deadline): %s", lease.id, exc)
                    lease.failed(time.monotonic())
                else:
                    if not stop.is_set():
                        lease.confirmed(info, sent.at)
        finally:
            if not lease.held:
                with self._lock:
                    self._held.pop(lease.id, None)

    def _lost(self, lease: RemoteLease, reason: str) -> None:
        if lease.mark_lost(reason):
            self._quietly(calls.release(lease.id), timeout=min(self.timeout, 5.0))

    def release(self, lease: RemoteLease | str) -> None:
        """Give the slot back (idempotent)."""
        if isinstance(lease, RemoteLease):
            if lease._stop is not None:
                lease._stop()
            lease.released = True
            with self._lock:
                self._held.pop(lease.id, None)
            lease_id = lease.id
        else:
            lease_id = lease
        self._send(calls.release(lease_id), self._control)

    @contextlib.contextmanager
    def slot(self, queue: str, **kwargs: Any) -> Iterator[RemoteLease]:
        """`with client.slot("chat", owner=...) as lease:`; call `lease.check()` in long loops. A lease lost
        while the body ran raises `LeaseLost` on exit (the body's own exception wins if it raised one)."""
        lease = self.acquire(queue, **kwargs)
        try:
            yield lease
        finally:
            if lease.lost is None:
                try:
                    self.release(lease)
                except (ConnectionFailed, ServerUnavailable, PoolExhausted) as error:
                    log.warning("releasing lease %s failed (it expires on its own): %s", lease.id, error)
                except (LeaseGone, ApiError) as error:
                    if isinstance(error, ApiError) and error.status != 404:
                        raise
                    log.warning("releasing lease %s: the server no longer knows it: %s", lease.id, error)
        if lease.lost is not None:
            raise lease.error()

    def renew(self, lease_id: str, ttl_s: float | None = None) -> LeaseInfo:
        return self._send(calls.renew(lease_id, ttl_s))

    def revoke(self, lease_id: str) -> LeaseInfo:
        return self._send(calls.revoke(lease_id))

    def cancel_waiter(self, waiter_id: str) -> WaiterInfo:
        return self._send(calls.cancel_waiter(waiter_id))

    # --------------------------------------------------------------- jobs

    def submit_task(
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
        return self._submit(calls.submit_task(task, args=args, kwargs=kwargs, idempotency_key=key, **fields))

    def submit_command(self, argv: list[str], *, idempotency_key: str | None = None, **fields: Any) -> Job:
        """Fields: queue, env, cwd, gpus, gpu_mem_mib, priority, max_runtime_s, max_attempts (retried as
        `submit_task` is)."""
        key = idempotency_key or calls.idempotency_key()
        return self._submit(calls.submit_command(argv, idempotency_key=key, **fields))

    def _submit(self, call: Call[Job]) -> Job:
        for delay in calls.SUBMIT_RETRY_DELAYS_S:
            try:
                return self._send(call)
            except ConnectionFailed as exc:
                log.warning("submit failed (%s); sending it again with the same Idempotency-Key", exc)
                time.sleep(delay)
        return self._send(call)

    def jobs(
        self,
        state: JobState | str | None = None,
        queue: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        return self._send(calls.jobs(state, queue, owner, limit, cursor))

    def job(self, job_id: str) -> Job:
        return self._send(calls.job(job_id))

    def cancel_job(self, job_id: str) -> Job:
        return self._send(calls.cancel_job(job_id))

    def retry(self, job_id: str) -> Job:
        """A new job with the spec of the finished job `job_id` (409 `ApiError` while it has not finished)."""
        return self._send(calls.retry_job(job_id))

    def job_log(self, job_id: str, tail: int = 200) -> str:
        return self._send(calls.job_log(job_id, tail))

    def job_log_page(self, job_id: str, before: int | None = None, max_bytes: int = 256 * 1024) -> JobLogPage:
        """Whole lines of the log ending at log position `before` (None: the end), cut where attempts began."""
        return self._send(calls.job_log_page(job_id, before, max_bytes))

    def follow_log(self, job_id: str, tail: int = 200, after: int | None = None) -> Iterator[str]:
        """The log's last lines (or, with `after`, what follows that log position), then new ones as they are
        written, until the job ends."""
        yield from self._lines(calls.follow_log(job_id, tail, after), None)

    # ------------------------------------------------------------- tokens

    def tokens(self) -> list[TokenInfo]:
        return self._send(calls.tokens())

    def create_token(self, name: str, role: str, replace: bool = False, confirm_self: bool = False) -> dict[str, Any]:
        """A new token (shown once); a name that exists needs `replace`, the caller's own `confirm_self`."""
        return self._send(calls.create_token(name, role, replace, confirm_self))

    def delete_token(self, name: str, confirm_self: bool = False) -> None:
        """Revoke a token; the caller's own needs `confirm_self`."""
        self._send(calls.delete_token(name, confirm_self))
