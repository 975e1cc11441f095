"""`JobRunner`: durable jobs on top of the engine.

A submit is stored (and committed) first, then offered to its queue's window
of engine waiters; the engine decides when it runs, exactly as for any other
slot. A granted job is marked running in the store before its work starts, so
a service that dies leaves a trace: on the next start such jobs are
`interrupted` and re-queued while attempts remain. Everything here runs on the
service's event loop. With a `StartGate` (redis mode: `cluster.jobgate`) a job
the engine granted also waits for the gate before it is marked running.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from ..engine import Clock, Lease, SlotEngine
from ..errors import (
    IdempotencyKeyReused,
    NoFittingDevice,
    QueueFull,
    SlotCancelled,
    StoreFault,
    UnknownJob,
    UnknownQueue,
    UnknownTask,
)
from ..model import CommandSubmit, Job, JobKind, JobPage, JobState, TaskSubmit
from ..probes.base import HostProbe
from ..stores import Store
from .backlog import Backlog
from .context import JobContext
from .execute import Outcome, RunControl, run_command, run_task
from .logs import LogPage, read_page, read_tail, remove_log
from .process import group_alive, is_job_group
from .registry import TaskRegistry
from .settings import JobSettings
from .tracking import job_mark, marked_pids, stop_job_processes
from .window import Held, QueueWindow, order_key

log = logging.getLogger("slotdeck.jobs")

JOB_WAIT_S = 10 * 365 * 86_400.0  # a durable job never times out waiting for its slot
STORE_RETRY_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)  # backoff while an outcome cannot be stored (the last repeats)
_REQUEST_FIELDS: tuple[str, ...] = ("kind", "queue", "priority", "task", "args", "kwargs", "argv", "cwd", "gpus")
_REQUEST_FIELDS += ("gpu_mem_mib", "max_attempts", "max_runtime_s")  # what a submit asked for (env: write-only)


def _request_of(job: Job) -> str:
    """The parts of a job its submit chose, as JSON (a tuple argument and its stored list compare equal): a retry
    under one Idempotency-Key repeats them exactly."""
    return json.dumps([getattr(job, name) for name in _REQUEST_FIELDS], sort_keys=True, default=repr)


IDEMPOTENCY_WINDOW_S = 86_400.0  # a repeated Idempotency-Key gets the first job back within this
MAX_IDEMPOTENCY_KEY = 200
MAX_WINDOW = 4096
LOG_PAGE_MAX_BYTES = 1024 * 1024  # the most of a log one page request returns


class EventSink(Protocol):
    """Where the runner publishes its events ("job", "prune"): the `SlotService`, to its `events()` subscribers."""

    def watched(self) -> bool:
        """Whether anyone is subscribed (else events need not be built)."""

    def publish(self, event: str, fields: dict[str, Any]) -> None:
        """Tell every subscriber `event` with `fields` (JSON-ready)."""


class StartGate(Protocol):
    """A second admission a granted job passes before it starts (redis mode: its queue's global slot)."""

    async def enter(self, job: Job, control: RunControl) -> Any:
        """Wait for the job's admission; None when `control` was asked to stop first (nothing held then).
        Raises SlotCancelled when an operator cancelled the wait, other errors when the job cannot run."""

    async def leave(self, grant: Any) -> None:
        """The job's work has stopped: give back what `enter` returned."""


class JobRunner:
    """Submits, feeds, runs, cancels, recovers and prunes jobs for one `SlotService`."""

    def __init__(
        self,
        engine: SlotEngine,
        store: Store,
        clock: Clock,
        settings: JobSettings,
        host_probe: HostProbe | None = None,
        *,
        events: EventSink,
        gate: StartGate | None = None,
    ) -> None:
        self.engine = engine
        self.gate = gate
        self._at_gate: dict[str, Held] = {}  # granted jobs waiting for the gate (not started: still queued)
        self.events = events
        self.store = store
        self.clock = clock
        self.settings = settings
        self.host_probe = host_probe
        self.tasks = TaskRegistry()
        self._held: dict[str, Held] = {}
        self._by_lease: dict[str, Held] = {}
        self._windows: dict[str, QueueWindow] = {}
        self.backlog = Backlog(engine)
        self._wake = asyncio.Event()
        self._claiming = False
        self._left_during_claim: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._feeder: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._log_dir: Path | None = settings.log_dir
        self._temp_log_dir: Path | None = None
        self._last_prune = float("-inf")
        self._started = False
        self._draining = False  # set by hold_queued(): no queued job starts any more
        self._unsaved: dict[str, Job] = {}  # outcomes the store could not take yet (retried until it does)
        self._claims_held_until = float("-inf")  # monotonic: after a store fault, claims pause a moment
        self._start_refused = False  # a start could not be stored: no job is offered until a write goes through
        # unique across restarts (fresh random prefix) and cheap per job (os.urandom is a syscall)
        self._id_prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self._recover()
        await self._prune()
        self.backlog.load(await self.store.count_queued())
        self._pool = ThreadPoolExecutor(self.settings.task_threads, thread_name_prefix="slotdeck-task")
        self._started = True
        self._feeder = asyncio.create_task(self._feed_forever(), name="slotdeck-job-feeder")

    def hold_queued(self) -> None:
        """Draining starts: from now on no queued job starts (they stay queued in the store); running ones go on."""
        self._draining = True
        for window in self._windows.values():
            for held in list(window.waiting.values()):
                window.remove(held.job.id)
                if held.waiter is not None:
                    self.engine.withdraw(held.waiter.id)
                self._held.pop(held.job.id, None)
            window.complete = False
        for held in self._at_gate.values():  # they have not started: they stay queued in the store
            held.control.request("shutdown")

    async def close(self) -> None:
        """Stop feeding, stop running jobs and wait for them: each goes back to `queued`, its attempt not counted
        (an operator stopped the service; the job did not fail), unless it finished first (then its real outcome)."""
        self._started = False
        self.hold_queued()
        if self._feeder is not None:
            self._feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feeder
            self._feeder = None
        running = {held.run: held for held in self._held.values() if held.run is not None}
        for held in self._held.values():
            held.control.request("shutdown")
        if running:
            _done, pending = await asyncio.wait(running, timeout=self.settings.kill_grace_s + 5.0)
            for task in pending:
                held = running[task]
                log.warning("job %s did not stop in time at shutdown; stored as queued for the next start", held.job.id)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                if held.job.id in self._unsaved:
                    continue  # it ended: its outcome waits in _unsaved, kept below
                requeued = held.job.model_copy(update=_requeue_after_shutdown(held.job))
                try:
                    await self.store.save_job(requeued)
                except StoreFault:
                    self._unsaved[requeued.id] = requeued
                except Exception:
                    log.exception("could not store job %s as queued at shutdown", requeued.id)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._keep_unsaved()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._temp_log_dir is not None:
            shutil.rmtree(self._temp_log_dir, ignore_errors=True)
            self._temp_log_dir = None

    async def _stop_orphan(self, job: Job) -> None:
        """A command has its own process group, so it outlives a killed service. Left alone it would keep its
        GPUs and, once re-queued, run twice: stop it (the group only if it is still the job's own), and every
        process that carries the job's marker (also those that left the group)."""
        if job.kind is not JobKind.command or job.started_at is None:
            return
        pgid: int | None = job.pid
        if pgid is not None and not group_alive(pgid):
            pgid = None
        if pgid is not None and not await asyncio.to_thread(is_job_group, pgid, job.started_at):
            log.info("job %s: process group %d is not the job's any more; left alone", job.id, pgid)
            pgid = None
        mark = job_mark(job.id, job.attempts)
        if pgid is None and not (await asyncio.to_thread(marked_pids, [mark]))[mark]:
            return
        log.warning("job %s: stopping the processes left running by the previous service", job.id)
        try:
            async with asyncio.timeout(self.settings.kill_grace_s + 15.0):  # never hold up the service's start
                survivors = await stop_job_processes(pgid, mark, self.settings.kill_grace_s)
        except TimeoutError:
            survivors = [pgid] if pgid is not None else []
        if survivors:
            log.error("job %s: processes %s survive SIGKILL; starting anyway", job.id, survivors)

    async def _recover(self) -> None:
        """Jobs the store says were running belong to a service that died: interrupted, re-queued per policy."""
        now = self.clock.time()
        cursor = None
        while True:
            page = await self.store.list_jobs(state=JobState.running, limit=500, cursor=cursor)
            # together: each may take the kill grace, and the service answers nobody until all are stopped
            await asyncio.gather(*(self._stop_orphan(job) for job in page.jobs))
            for job in page.jobs:
                note = f"interrupted: the service stopped while attempt {job.attempts} of {job.max_attempts} ran"
                updates: dict[str, Any] = {"error": note, "pid": None, "lease_id": None}
                if job.attempts < job.max_attempts:
                    updates.update(state=JobState.queued, not_before=None)
                else:
                    updates.update(state=JobState.interrupted, finished_at=now)
                await self.store.save_job(job.model_copy(update=updates))
                log.warning("job %s %s", job.id, note)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # ---------------------------------------------------------------- submit

    def task(self, name: str, queue: str = "default") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register a callable as a task that jobs can run."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.tasks.register(name, fn, queue)
            return fn

        return register

    async def submit(
        self,
        task: str,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        owner: str | None = None,
        priority: int = 0,
        max_attempts: int = 1,
        max_runtime_s: float | None = None,
        gpus: int = 0,
        gpu_mem_mib: int = 0,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a registered task; returns once the job is committed to the store.

        `gpus`/`gpu_mem_mib` are admitted as for commands; the callable learns its
        devices from `current_job()`. With `idempotency_key`, a submit that repeats the key of one from the same
        `owner` within a day returns that first job (its `replayed` is True) instead of queuing another.
        """
        spec = self.tasks.get(task)
        request = TaskSubmit(
            task=task,
            args=list(args or ()),
            kwargs=kwargs or {},
            gpus=gpus,
            gpu_mem_mib=gpu_mem_mib,
            priority=priority,
            max_attempts=max_attempts,
            max_runtime_s=max_runtime_s,
        )
        if request.args or request.kwargs:
            try:
                json.dumps([request.args, request.kwargs])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"task arguments must be JSON-serializable: {exc}") from None
        fields = self._gpu_fields(dict(request.__dict__))  # validated just now; Job takes the values as they are
        job = self._new_job(JobKind.task, spec.queue, owner, fields, idempotency_key)
        return await self._submit(job)

    def _gpu_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A memory request alone means one GPU; a request no device here can ever meet fails at once."""
        if fields["gpu_mem_mib"] and not fields["gpus"]:
            fields["gpus"] = 1
        if fields["gpus"]:
            self.engine.pool.check_possible(fields["gpus"], fields["gpu_mem_mib"])
        return fields

    async def submit_command(
        self,
        argv: list[str],
        queue: str = "default",
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        gpus: int = 0,
        gpu_mem_mib: int = 0,
        priority: int = 0,
        max_runtime_s: float | None = None,
        max_attempts: int = 1,
        owner: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a command (argv, no shell); returns once the job is committed to the store (`idempotency_key`:
        as for `submit`)."""
        request = CommandSubmit(
            argv=argv,
            queue=queue,
            env=env or {},
            cwd=cwd,
            gpus=gpus,
            gpu_mem_mib=gpu_mem_mib,
            priority=priority,
            max_runtime_s=max_runtime_s,
            max_attempts=max_attempts,
        )
        fields = self._gpu_fields(request.model_dump(exclude={"queue"}))
        return await self._submit(self._new_job(JobKind.command, request.queue, owner, fields, idempotency_key))

    def _new_job(
        self, kind: JobKind, queue: str, owner: str | None, fields: dict[str, Any], idempotency_key: str | None = None
    ) -> Job:
        self.engine.queue(queue)  # UnknownQueue before anything is stored
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise ValueError(f"an idempotency key has 1 to {MAX_IDEMPOTENCY_KEY} characters")
        job_id = f"j{self._id_prefix}{next(self._ids):x}"
        return Job(
            id=job_id,
            kind=kind,
            queue=queue,
            owner=owner,
            created_at=self.clock.time(),
            idempotency_key=idempotency_key,
            **fields,
        )

    async def _submit(self, job: Job) -> Job:
        if job.idempotency_key is not None:
            scoped = f"{job.owner or ''}\n{job.idempotency_key}"
            stored, created = await self.store.add_job_once(job, scoped, self.clock.time() - IDEMPOTENCY_WINDOW_S)
            if not created:
                if _request_of(stored) != _request_of(job):
                    raise IdempotencyKeyReused(job.idempotency_key, stored.id)
                return stored.as_replay()
        else:
            stored = await self.store.add_job(job)
        self.backlog.change(stored.queue, stored=1, push=False)  # told below: one granted at once never waited
        self._emit(stored)
        if self._started:
            self._offer(stored)
        self.backlog.push(stored.queue)
        return stored

    # ---------------------------------------------------------------- window

    def _window(self, queue: str) -> QueueWindow:
        window = self._windows.get(queue)
        if window is None:
            window = self._windows[queue] = QueueWindow()
        return window

    def _target(self, queue: str) -> int:
        state = self.engine.queues.get(queue)
        limit = state.config.limit if state is not None else 0
        return max(self.settings.window, min(2 * limit, MAX_WINDOW))

    def _offer(self, job: Job) -> None:
        """A queued job joins its window now if the store holds nothing that should run before it."""
        if self._draining:
            return
        window = self._window(job.queue)
        if job.id in self._held or job.queue not in self.engine.queues:
            return
        if job.not_before is not None and job.not_before > self.clock.time():
            window.complete = False  # the poll picks it up once due
            return
        target = self._target(job.queue)
        if not window.complete and self.backlog.unclaimed(job.queue) == 1:
            window.complete = True  # every other queued job of the queue is held: nothing in the store goes first
        if window.complete and len(window.waiting) < target:
            self._load(job, window)
            return
        tail = window.tail()
        if tail is not None and order_key(job) < order_key(tail.job):
            if self._load(job, window) and len(window.waiting) > target:
                self._evict(tail, window)
            return
        window.complete = False
        self._wake.set()

    def _evict(self, held: Held, window: QueueWindow) -> None:
        """Hand a waiting job's place back to the store (it stays queued there)."""
        window.remove(held.job.id)
        window.complete = False
        if held.waiter is not None:
            self.engine.withdraw(held.waiter.id)
        self._forget(held)

    def _load(self, job: Job, window: QueueWindow) -> bool:
        """Make a queued job an engine waiter (or grant it at once); False when the queue takes no more."""
        held = self._hold(job)  # first: it leaves the backlog as it joins the line, never counted twice
        try:
            result = self.engine.enqueue(
                job.queue,
                owner=job.owner,
                priority=job.priority,
                timeout_s=JOB_WAIT_S,
                gpus=job.gpus,
                gpu_mem_mib=job.gpu_mem_mib,
                job_id=job.id,
            )
        except QueueFull:
            self._forget(held)
            window.complete = False
            return False
        except (NoFittingDevice, UnknownQueue) as exc:
            self._spawn(self._settle(held, state=JobState.failed, error=str(exc), finished_at=self.clock.time()))
            return True
        if isinstance(result, Lease):
            self._start(held, result)
        else:
            held.waiter = result
            window.add(held)
            result.future.add_done_callback(partial(self._granted, held))
        return True

    def _hold(self, job: Job) -> Held:
        held = Held(job=job)
        self._held[job.id] = held
        if job.state is JobState.queued:
            self.backlog.change(job.queue, held=1)
        return held

    def _retag(self, held: Held, job: Job) -> Job:
        """Replace a held job's state, keeping the backlog counts (queued in the store, held) exact."""
        was, now = held.job.state is JobState.queued, job.state is JobState.queued
        held.job = job
        if was != now:
            step = 1 if now else -1
            self.backlog.change(job.queue, stored=step, held=step if self._held.get(job.id) is held else 0)
        return job

    def _forget(self, held: Held) -> None:
        if self._held.get(held.job.id) is held:
            del self._held[held.job.id]
            if held.job.state is JobState.queued:
                self.backlog.change(held.job.queue, held=-1)
            if self._claiming:
                self._left_during_claim.add(held.job.id)
        if held.lease is not None:
            self._unwatch_lease(held.lease.id)

    def _granted(self, held: Held, future: asyncio.Future[Lease]) -> None:
        if future.cancelled():
            return  # withdrawn: handled by whoever withdrew it
        self._window(held.job.queue).remove(held.job.id)
        held.waiter = None
        self._wake.set()
        error = future.exception()
        if error is None and self._draining:  # granted just as draining began: it does not start, it stays queued
            self.engine.release(future.result().id)
            self._forget(held)
            return
        if error is not None:  # an operator cancelled the waiter, or its queue was deleted
            self._spawn(self._settle(held, state=JobState.cancelled, error=str(error), finished_at=self.clock.time()))
            return
        self._start(held, future.result())

    async def _feed_forever(self) -> None:
        last_poll = self.clock.time()
        while self._started:
            polled = False
            try:
                async with asyncio.timeout(self.settings.poll_s):  # not wait_for: it can swallow a cancel
                    await self._wake.wait()
            except TimeoutError:
                polled = True
            self._wake.clear()
            try:
                now = self.clock.time()
                if polled or now - last_poll >= self.settings.poll_s:
                    polled, last_poll = True, now
                    await self._sample_running()
                if polled:
                    self.backlog.sync()
                for queue in self.backlog.claimable_queues():
                    if queue in self.engine.queues:
                        await self._refill(queue, polled)
                if now - self._last_prune >= self.settings.prune_every_s:
                    await self._prune()
            except StoreFault:  # logged once and counted by the store's health; try again on the next poll
                await asyncio.sleep(self.settings.poll_s)
            except Exception:
                log.exception("job feeder failed; retrying")
                await asyncio.sleep(self.settings.poll_s)

    async def _refill(self, queue: str, polled: bool) -> None:
        """Top up a queue's window from the store once it has drained to half (or on the poll)."""
        if self._draining or time.monotonic() < self._claims_held_until:
            return
        window = self._window(queue)
        target = self._target(queue)
        room = target - len(window.waiting)
        if room <= 0 or (window.complete and not polled) or len(window.waiting) > target // 2:
            return
        skip = {job_id for job_id, held in self._held.items() if held.job.queue == queue}
        self._claiming = True
        self._left_during_claim.clear()
        try:
            jobs = await self.store.claim_jobs(queue, room, self.clock.time(), skip)
        finally:
            self._claiming = False
        if jobs and self._start_refused:
            # a grant now would be given back at once (a fence used, granted and released counted, nothing run):
            # re-store one claimed job unchanged first; a StoreFault here keeps every job in the store, unoffered
            await self.store.save_job(jobs[0])
            self._start_refused = False
        stale = self._left_during_claim
        complete = len(jobs) < room
        for job in jobs:
            if job.id in stale:  # settled while the claim ran: the claim may have read its old state
                complete = False
                continue
            if job.id in self._held:
                continue
            if not self._load(job, window):
                complete = False
                break
        window.complete = complete and queue in self.engine.queues
        stale.clear()

    # --------------------------------------------------------------- running

    def _start(self, held: Held, lease: Lease) -> None:
        held.lease = lease
        if not self._by_lease:
            self.engine.listeners.append(self._engine_event)
        self._by_lease[lease.id] = held
        lease.on_cancel = partial(held.control.request, "cancelled")
        held.control.on_start = partial(self._process_started, held)
        if held.job.kind is JobKind.task:  # it runs in the service's own process: its GPU memory cannot be told apart
            self.engine.set_lease_processes(lease.id, None)
        held.run = asyncio.create_task(self._run(held, lease), name=f"slotdeck-job-{held.job.id}")

    async def _run(self, held: Held, lease: Lease) -> None:
        job = held.job
        grant: Any = None
        try:
            if lease.id not in self.engine.leases:  # revoked between the grant and now
                held.control.request("cancelled")
            if self.gate is not None:
                grant, unstarted = await self._pass_gate(held)
                if unstarted is not None:  # it never started: settled without counting an attempt
                    self._spawn(self._not_started(held, unstarted))
                    return
            running = job.model_copy(
                update={
                    "state": JobState.running,
                    "started_at": self.clock.time(),
                    "attempts": job.attempts + 1,
                    "devices": list(lease.devices),
                    "lease_id": lease.id if grant is None else grant.id,
                    "not_before": None,
                }
            )
            try:
                await self.store.save_job(running)
            except StoreFault:  # it could not be recorded as running, so it does not run: it stays queued in the store
                self._put_back(held)
                return
            job = self._retag(held, running)
            if job.kind is JobKind.command:
                held.control.mark = job_mark(job.id, job.attempts)
            self._emit(job)
            outcome = await self._execute(held, lease)
        except Exception as exc:
            log.exception("job %s failed in the runner", job.id)
            outcome = Outcome(JobState.failed, error=f"{type(exc).__name__}: {exc}")
        finally:
            if lease.id in self.engine.leases:
                self.engine.release(lease.id)  # only now: the work has stopped
            self._unwatch_lease(lease.id)
            if grant is not None and self.gate is not None:
                await self.gate.leave(grant)
        await self._conclude(held, outcome)

    async def _pass_gate(self, held: Held) -> tuple[Any, Outcome | None]:
        """Wait for the gate: (its grant, None) to start, or (None, why the job does not start)."""
        assert self.gate is not None
        if held.control.reason is not None:
            return None, held.control.stopped()
        self._at_gate[held.job.id] = held
        try:
            grant = await self.gate.enter(held.job, held.control)
        except SlotCancelled as exc:  # an operator cancelled its wait
            return None, Outcome(JobState.cancelled, error=str(exc))
        except Exception as exc:
            return None, Outcome(JobState.failed, error=str(exc))
        finally:
            self._at_gate.pop(held.job.id, None)
        if grant is None:
            return None, held.control.stopped()
        if self._draining:  # granted just as draining began: it does not start, it stays queued
            await self.gate.leave(grant)
            held.control.request("shutdown")
            return None, held.control.stopped()
        return grant, None

    async def _not_started(self, held: Held, outcome: Outcome) -> None:
        """A job that stopped before its start: one the shutdown stopped stays queued in the store as it is;
        otherwise it ends in `outcome` (cancelled, failed) without an attempt counted."""
        if outcome.state is JobState.interrupted:
            self._forget(held)
            held.settled.set()
            self._wake.set()
            return
        await self._settle(held, state=outcome.state, error=outcome.error, finished_at=self.clock.time())

    async def _execute(self, held: Held, lease: Lease) -> Outcome:
        job = held.job
        if held.control.reason is not None:
            return held.control.stopped()
        if job.kind is JobKind.task:
            assert job.task is not None and self._pool is not None
            try:
                spec = self.tasks.get(job.task)
            except UnknownTask as exc:
                return Outcome(JobState.failed, error=str(exc))
            uuids = self.engine.pool.uuids(lease.devices)
            context = JobContext(job.id, lease.devices, tuple(uuids) if uuids else None, job.gpu_mem_mib)
            return await run_task(spec, job, held.control, self._pool, context)
        outcome = await run_command(
            job,
            self.engine.pool.uuids(lease.devices) or list(lease.devices),  # UUIDs name one card whatever the order
            held.control,
            self._log_path(job.id),
            self.settings.log_max_bytes,
            self.settings.kill_grace_s,
            self.settings.pass_env,
        )
        return outcome

    def _put_back(self, held: Held) -> None:
        """A granted job that could not be marked running: forget it (the store still has it queued) and claim
        again only after a pause, and offer again only once the store takes a write, so a failing store is not
        hammered and no slot is granted for nothing."""
        self._start_refused = True
        self._forget(held)
        held.settled.set()
        self._window(held.job.queue).complete = False
        self._claims_held_until = time.monotonic() + max(self.settings.poll_s, 0.5)

    def _process_started(self, held: Held) -> None:
        """Store a command's process group as soon as it exists: a service that dies then leaves a trail to it."""
        held.job = held.job.model_copy(update={"pid": held.control.pid})
        if held.lease is not None and held.control.pid is not None:
            self.engine.set_lease_processes(held.lease.id, frozenset({held.control.pid}))
        self._spawn(self._save_quietly(held.job))
        self._emit(self._live(held))

    async def _save_quietly(self, job: Job) -> None:
        with contextlib.suppress(StoreFault):  # counted by the store's health; the outcome is saved later anyway
            await self.store.save_job(job)

    async def _conclude(self, held: Held, outcome: Outcome) -> None:
        """Record an outcome; a failure, time-out or interruption with attempts left is queued again."""
        job = held.job
        now = self.clock.time()
        updates: dict[str, Any] = {
            "result": outcome.result,
            "error": outcome.error,
            "exit_code": outcome.exit_code,
            "lease_id": None,
            "survivors": outcome.survivors,
        }
        retry = outcome.state in (JobState.failed, JobState.timed_out, JobState.interrupted)
        if outcome.state is JobState.interrupted and held.control.reason == "shutdown":
            updates.update(_requeue_after_shutdown(job))
        elif retry and job.attempts < job.max_attempts:
            if outcome.state is JobState.interrupted:
                delay = 0.0
            else:
                delay = min(self.settings.retry_backoff_max_s, self.settings.retry_backoff_s * 2 ** (job.attempts - 1))
            updates.update(state=JobState.queued, not_before=now + delay if delay else None)
        else:
            updates.update(state=outcome.state, finished_at=now)
        await self._settle(held, **updates)

    async def _settle(self, held: Held, **updates: Any) -> None:
        """Store a job's new state, then let go of it (and offer it again if it is queued)."""
        job = self._retag(held, held.job.model_copy(update=updates))
        self._count_outcome(job)
        try:
            await self._store_outcome(job)
        except Exception:
            log.exception("could not store the new state of job %s", job.id)
        finally:
            self._forget(held)
            held.settled.set()
        self._emit(job)
        self._wake.set()
        if job.state is JobState.queued and self._started:
            self._offer(job)

    async def _store_outcome(self, job: Job) -> None:
        """Save a job's new state, retrying while the store fails (disk full, ...): an outcome is never dropped.
        Meanwhile reads show it. A closing service leaves it in `_unsaved` for `close()` to keep (`_keep_unsaved`)."""
        delays = iter(STORE_RETRY_S)
        delay = 0.0
        while True:
            try:
                await self.store.save_job(job)
            except StoreFault as fault:
                if self._unsaved.get(job.id) is None:  # the fault itself is logged once by the store's health
                    log.debug("job %s: its new state (%s) waits until the store can take it: %s", job.id, job.state, fault)
                self._unsaved[job.id] = job
                if not self._started:
                    return
                delay = next(delays, STORE_RETRY_S[-1])
                await asyncio.sleep(delay)
            else:
                if self._unsaved.pop(job.id, None) is not None:
                    log.info("job %s: its state (%s) is stored now", job.id, job.state)
                return

    async def _keep_unsaved(self) -> None:
        """At close: job states the store still refuses are tried once more, then spilled into the space the store
        reserved for them (stored at its next open, see `stores.spill`); what even that cannot keep is logged."""
        jobs: list[Job] = []
        for job in list(self._unsaved.values()):
            try:
                await self.store.save_job(job)
            except StoreFault:
                jobs.append(job)
            except Exception:
                log.exception("could not store the new state of job %s", job.id)
        self._unsaved.clear()
        if not jobs:
            return
        kept = {job.id for job in await self.store.spill_jobs(jobs)}
        if kept:
            log.warning("%d job state(s) the store refused are kept in its reserve until the next start", len(kept))
        for job in jobs:
            if job.id not in kept:
                log.error(
                    "job %s: could not store its new state before shutdown: state=%s exit_code=%s result=%r error=%r",
                    job.id,
                    job.state.value,
                    job.exit_code,
                    job.result,
                    job.error,
                )

    def _count_outcome(self, job: Job) -> None:
        """Failed and timed-out jobs count in their queue's totals (`/queue/status` `total_failed`)."""
        state = self.engine.queues.get(job.queue)
        if state is None:
            return
        if job.state is JobState.failed:
            state.jobs_failed += 1
        elif job.state is JobState.timed_out:
            state.jobs_timed_out += 1
        else:
            return
        self.engine.version += 1

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _unwatch_lease(self, lease_id: str) -> None:
        # listening only while jobs hold leases keeps the engine's no-listener fast path for slot() users
        if self._by_lease.pop(lease_id, None) is not None and not self._by_lease:
            self.engine.listeners.remove(self._engine_event)

    def _engine_event(self, event: str, fields: dict[str, Any]) -> None:
        """A job's lease revoked by an operator stops the job as a cancel would."""
        if event == "revoked":
            held = self._by_lease.get(fields.get("lease", ""))
            if held is not None:
                held.control.request("cancelled")

    # ---------------------------------------------------------------- cancel

    def cancel_held(self, job_id: str) -> bool:
        """Cancel a job that waits in the engine or runs; False for any other id."""
        held = self._held.get(job_id)
        if held is None:
            return False
        if held.waiter is not None:
            return self.engine.cancel(held.waiter.id)
        if held.lease is not None and held.lease.id in self.engine.leases:
            return self.engine.cancel(held.lease.id)
        held.control.request("cancelled")
        return True

    async def cancel_job(self, job_id: str, wait_s: float | None = None) -> Job:
        """Cancel a queued or running job and return it once it has stopped, or after `wait_s` (default:
        the kill grace + 2 s) with state `cancelling` while its process is still being stopped."""
        held = self._held.get(job_id)
        if held is not None:
            self.cancel_held(job_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.kill_grace_s + 2.0 if wait_s is None else wait_s):
                    await held.settled.wait()
            return await self.get_job(job_id)
        job = await self.store.get_job(job_id)
        if job is None:
            raise UnknownJob(job_id)
        if job.state is not JobState.queued or job_id in self._held:
            return await self.get_job(job_id)
        held = self._hold(job)  # keeps the feeder from claiming it while the cancel is stored
        await self._settle(held, state=JobState.cancelled, error="cancelled", finished_at=self.clock.time())
        return held.job

    # --------------------------------------------------------------- reading

    async def get_job(self, job_id: str) -> Job:
        unsaved = self._unsaved.get(job_id)
        if unsaved is not None:
            return unsaved
        held = self._held.get(job_id)
        if held is not None and held.job.state is JobState.running:
            return self._live(held)
        job = await self.store.get_job(job_id)
        if job is None:
            raise UnknownJob(job_id)
        return job

    async def list_jobs(
        self,
        state: JobState | str | None = None,
        queue: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        chosen = JobState(state) if state is not None else None
        page = await self.store.list_jobs(chosen, queue, owner, limit, cursor)
        jobs = []
        for job in page.jobs:
            held = self._held.get(job.id)
            if job.id in self._unsaved:
                jobs.append(self._unsaved[job.id])
            else:
                jobs.append(self._live(held) if held is not None and held.job.state is JobState.running else job)
        return JobPage(jobs=jobs, next_cursor=page.next_cursor)

    def _live(self, held: Held) -> Job:
        return held.job.model_copy(
            update={
                "state": JobState.cancelling if held.control.reason == "cancelled" else held.job.state,
                "pid": held.control.pid,
                "cpu_pct": held.cpu_pct,
                "rss_mib": held.rss_mib,
                "gpu_mem_used_mib": held.gpu_mem_used_mib,
            }
        )

    def log_path(self, job_id: str) -> Path | None:
        """The job's log file if it has one (for following it)."""
        directory = self._log_dir or self._temp_log_dir or self.store.default_log_dir()
        if directory is None:
            return None
        path = directory / f"{job_id}.log"
        return path if path.exists() else None

    async def job_log(self, job_id: str, tail: int = 200) -> str:
        if not 0 <= tail <= 100_000:
            raise ValueError("tail must be between 0 and 100000 lines")
        await self.get_job(job_id)  # UnknownJob for an unknown id
        path = self.log_path(job_id)
        if path is None:
            return ""
        return await asyncio.to_thread(read_tail, path, tail)

    async def job_log_page(self, job_id: str, before: int | None, max_bytes: int) -> LogPage:
        """Whole lines of the job's output ending at log position `before` (None: its end), at most `max_bytes`."""
        if not 1 <= max_bytes <= LOG_PAGE_MAX_BYTES:
            raise ValueError(f"max_bytes must be between 1 and {LOG_PAGE_MAX_BYTES}")
        await self.get_job(job_id)  # UnknownJob for an unknown id
        path = self.log_path(job_id)
        if path is None:
            return LogPage(0, 0, 0, ())
        return await asyncio.to_thread(read_page, path, before, max_bytes)

    def _log_path(self, job_id: str) -> Path:
        if self._log_dir is None:
            self._log_dir = self.store.default_log_dir()
        if self._log_dir is None:
            self._temp_log_dir = self._log_dir = Path(tempfile.mkdtemp(prefix="slotdeck-logs-"))
        return self._log_dir / f"{job_id}.log"

    # ------------------------------------------------------ upkeep and events

    async def _prune(self) -> None:
        self._last_prune = self.clock.time()
        settings = self.settings
        if settings.keep_finished_s is None and settings.keep_finished is None:
            return
        cutoff = self._last_prune - settings.keep_finished_s if settings.keep_finished_s is not None else None
        pruned = await self.store.prune_jobs(cutoff, settings.keep_finished)
        directory = self._log_dir or self.store.default_log_dir()
        if pruned and directory is not None:
            await asyncio.to_thread(_remove_logs, directory, pruned)
        if pruned:
            log.info("pruned %d finished job(s)", len(pruned))
            self._tell("prune", {"jobs": pruned})  # watchers holding job lists drop these rows

    async def _sample_running(self) -> None:
        """Live CPU, RSS and GPU memory of running command jobs' processes; tell admission which they are."""
        running = [h for h in self._held.values() if h.control.pid is not None and h.job.state is JobState.running]
        if not running:
            return
        marks = [h.control.mark for h in running if h.control.mark is not None]
        marked = await asyncio.to_thread(marked_pids, marks)  # also members that left the process group
        probe = self.host_probe
        figures: list[tuple[float, float] | None] = [None] * len(running)
        if probe is not None and hasattr(probe, "process_tree_usage"):
            figures = await asyncio.to_thread(lambda: [probe.process_tree_usage(h.control.pid) for h in running])
        gpu_by_pid: dict[int, int] = {}
        for device in self.engine.pool.devices.values():
            for process in device.info.processes:
                gpu_by_pid[process.pid] = gpu_by_pid.get(process.pid, 0) + (process.used_mib or 0)
        for held, usage in zip(running, figures, strict=True):
            held.cpu_pct, held.rss_mib = usage if usage is not None else (None, None)
            assert held.control.pid is not None
            pids = {held.control.pid, *marked.get(held.control.mark or "", ())}
            if probe is not None and hasattr(probe, "tree_pids"):
                pids.update(probe.tree_pids(held.control.pid))
            if held.lease is not None and held.control.mark is not None:
                self.engine.set_lease_processes(held.lease.id, frozenset(pids))
            if gpu_by_pid:
                held.gpu_mem_used_mib = sum(gpu_by_pid.get(pid, 0) for pid in pids)

    def _emit(self, job: Job) -> None:
        if self.events.watched():  # a job serialized for nobody is wasted work
            self._tell("job", {"job": job.model_dump(mode="json")})

    def _tell(self, event: str, data: dict[str, Any]) -> None:
        self.events.publish(event, data)


def _remove_logs(directory: Path, job_ids: list[str]) -> None:
    for job_id in job_ids:
        remove_log(directory / f"{job_id}.log")


def _requeue_after_shutdown(job: Job) -> dict[str, Any]:
    """A job the service's shutdown stopped goes back to `queued`, whatever its attempts: it did not fail."""
    return {
        "state": JobState.queued,
        "attempts": max(0, job.attempts - 1),
        "not_before": None,
        "pid": None,
        "lease_id": None,
        "error": "stopped by a service shutdown; queued again (not counted as an attempt)",
    }
