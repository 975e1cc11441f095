"""`Client`: the blocking twin of `AsyncClient` (same method names, same calls), for scripts,
WSGI views and worker threads. Leases are renewed by a small daemon thread each."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
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
from .aio import EVENTS_READ_S
from .calls import AcquireFlow, Call, ServerEvent, SseParser, acquire_request
from .errors import ApiError, ConnectionFailed
from .lease import RemoteLease
from .transport import Verify, describe_failure, http_options, read, stream_timeout

log = logging.getLogger("slotdeck.client")

T = TypeVar("T")


class Client:
    """`Client(url, token)`; HTTP errors raise the matching SlotDeck errors, transport failures `ConnectionFailed`."""

    def __init__(
        self, base_url: str, token: str | None = None, *, verify: Verify = True, timeout: float = 10.0, poll_s: float = 20.0
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.poll_s = poll_s
        self._http = httpx.Client(**http_options(base_url, token, verify, timeout))

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(call.method, call.path, **call.request_kwargs())
        except httpx.TransportError as exc:
            raise ConnectionFailed(describe_failure(self.base_url, exc)) from exc
        return read(call, response)

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
        self._http.close()

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

    def events(self, last_event_id: str | None = None, types: Sequence[str] | None = None) -> Iterator[ServerEvent]:
        """Server-sent events until the server ends the stream; resume with the last event's `id`.
        `types` picks some of "snapshot", "lease", "job", "prune", "audit" (default: all)."""
        parser = SseParser()
        for line in self._lines(calls.events(last_event_id, types), EVENTS_READ_S):
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
    ) -> RemoteLease:
        """Wait for a slot (long-polling) and keep the lease alive until `release()`."""
        flow = AcquireFlow(queue, acquire_request(owner, priority, gpus, gpu_mem_mib, timeout_s, ttl_s), self.poll_s)
        call = flow.first()
        try:
            while not isinstance(step := flow.step(self._send(call)), LeaseInfo):
                call = step
        except BaseException as exc:
            abandon = flow.abandon()
            if abandon is not None and (not isinstance(exc, SlotDeckError) or isinstance(exc, ConnectionFailed)):
                with contextlib.suppress(SlotDeckError):
                    self._send(abandon)
            raise
        lease = RemoteLease(step, ttl_s)
        stop = threading.Event()
        lease._stop = stop.set
        threading.Thread(target=self._keep_alive, args=(lease, stop), name=f"slotdeck-renew-{lease.id}", daemon=True).start()
        return lease

    def _keep_alive(self, lease: RemoteLease, stop: threading.Event) -> None:
        while not stop.wait(lease.renew_every_s):
            try:
                lease.info = self._send(calls.renew(lease.id))
            except LeaseGone as exc:
                lease.mark_lost(exc.reason)
                return
            except SlotDeckError as exc:
                log.warning("renewing lease %s failed (will retry): %s", lease.id, exc)

    def release(self, lease: RemoteLease | str) -> None:
        """Give the slot back (idempotent)."""
        if isinstance(lease, RemoteLease):
            if lease._stop is not None:
                lease._stop()
            lease.released = True
            lease_id = lease.id
        else:
            lease_id = lease
        self._send(calls.release(lease_id))

    @contextlib.contextmanager
    def slot(self, queue: str, **kwargs: Any) -> Iterator[RemoteLease]:
        """`with client.slot("chat", owner=...) as lease:`; check `lease.lost` in long bodies."""
        lease = self.acquire(queue, **kwargs)
        try:
            yield lease
        finally:
            with contextlib.suppress(ConnectionFailed):
                try:
                    self.release(lease)
                except ApiError as exc:
                    if exc.code != "unknown_lease":
                        raise
                    log.warning("lease %s was unknown to the server at release (it restarted?): %s", lease.id, exc)

    def renew(self, lease_id: str, ttl_s: float | None = None) -> LeaseInfo:
        return self._send(calls.renew(lease_id, ttl_s))

    def revoke(self, lease_id: str) -> LeaseInfo:
        return self._send(calls.revoke(lease_id))

    def cancel_waiter(self, waiter_id: str) -> WaiterInfo:
        return self._send(calls.cancel_waiter(waiter_id))

    # --------------------------------------------------------------- jobs

    def submit_task(
        self, task: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None, **fields: Any
    ) -> Job:
        return self._send(calls.submit_task(task, args=args, kwargs=kwargs, **fields))

    def submit_command(self, argv: list[str], **fields: Any) -> Job:
        """Fields: queue, env, cwd, gpus, gpu_mem_mib, priority, max_runtime_s, max_attempts."""
        return self._send(calls.submit_command(argv, **fields))

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

    def job_log(self, job_id: str, tail: int = 200) -> str:
        return self._send(calls.job_log(job_id, tail))

    def follow_log(self, job_id: str, tail: int = 200) -> Iterator[str]:
        """The log's last lines, then new ones as they are written, until the job ends."""
        yield from self._lines(calls.follow_log(job_id, tail), None)

    # ------------------------------------------------------------- tokens

    def tokens(self) -> list[TokenInfo]:
        return self._send(calls.tokens())

    def create_token(self, name: str, role: str) -> dict[str, Any]:
        return self._send(calls.create_token(name, role))

    def delete_token(self, name: str) -> None:
        self._send(calls.delete_token(name))
