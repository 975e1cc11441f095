"""Running one granted job to an outcome: a task callable or a command, stoppable either way.

A run ends in exactly one `Outcome`. Stopping (operator cancel, max runtime,
service shutdown) goes through `RunControl`; the run returns only once the
work has really stopped, which is when its slot may be handed back.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model import Job, JobState
from .context import JobContext, _current
from .environment import job_environment
from .logs import CappedLog
from .process import command_env, describe_exit, start_command
from .registry import TaskSpec
from .tracking import MARK_VAR, stop_job_processes

log = logging.getLogger("slotdeck.jobs")

PIPE_DRAIN_S = 1.0  # after the group is gone, how long output from escaped processes is still read


@dataclass
class Outcome:
    state: JobState
    result: Any = None
    error: str | None = None
    exit_code: int | None = None
    survivors: list[int] = field(default_factory=list)


@dataclass
class RunControl:
    """The handle a running job is stopped through; `reason` is cancelled, timed_out or shutdown."""

    reason: str | None = None
    event: asyncio.Event = field(default_factory=asyncio.Event)
    pid: int | None = None
    on_start: Callable[[], None] | None = None  # told once the process exists, so watchers learn its pid
    mark: str | None = None  # a command's SLOTDECK_JOB_MARK, which its processes carry (see jobs.tracking)

    def started(self, pid: int) -> None:
        self.pid = pid
        if self.on_start is not None:
            self.on_start()

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.event.set()

    def stopped(self, why_not_requested: str = "timed_out") -> Outcome:
        reason = self.reason or why_not_requested
        state = {"cancelled": JobState.cancelled, "shutdown": JobState.interrupted}.get(reason, JobState.timed_out)
        messages = {
            JobState.cancelled: "cancelled",
            JobState.interrupted: "interrupted: the service shut down while it ran",
            JobState.timed_out: "ran past its max_runtime_s",
        }
        return Outcome(state, error=messages[state])


def storable(result: Any) -> Any:
    """Results are kept as JSON; anything else is kept as its repr rather than lost."""
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return repr(result)
    return result


async def _wait_or_stop(work: asyncio.Future[Any], control: RunControl, limit_s: float | None) -> bool:
    """Wait for the work, a stop request or the runtime limit; True when the work finished by itself."""
    stop = asyncio.ensure_future(control.event.wait())
    try:
        await asyncio.wait({work, stop}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    return work.done()


async def run_task(
    spec: TaskSpec, job: Job, control: RunControl, pool: Executor, context: JobContext | None = None
) -> Outcome:
    """Run a task callable; inside it `current_job()` returns `context` (its id and GPUs)."""
    loop = asyncio.get_running_loop()
    token = _current.set(context or JobContext(job_id=job.id))
    try:
        ctx = contextvars.copy_context()
    finally:
        _current.reset(token)
    if spec.is_async:
        # a task made inside ctx.run starts from a copy of ctx, so the callable sees its job
        work: asyncio.Future[Any] = ctx.run(asyncio.ensure_future, spec.fn(*job.args, **job.kwargs))
    else:
        work = loop.run_in_executor(pool, functools.partial(ctx.run, spec.fn, *job.args, **job.kwargs))
    if not await _wait_or_stop(work, control, job.max_runtime_s):
        if spec.is_async:
            work.cancel()
        else:
            log.warning("job %s: a sync task cannot be interrupted; its slot is held until it returns", job.id)
        await asyncio.wait({work})
        if control.reason != "shutdown" or work.cancelled():
            if not work.cancelled():
                work.exception()  # retrieved: the outcome is the stop, not what it raised afterwards
            return control.stopped()
        # a task that finished during a shutdown is stored with its real outcome, not dropped as interrupted
    if work.cancelled():
        return Outcome(JobState.failed, error="the task cancelled itself")
    error = work.exception()
    if error is not None:
        return Outcome(JobState.failed, error=f"{type(error).__name__}: {error}")
    return Outcome(JobState.succeeded, result=storable(work.result()))


async def run_command(
    job: Job,
    devices: Sequence[int | str],
    control: RunControl,
    log_path: Path,
    log_max_bytes: int,
    grace_s: float,
    pass_env: tuple[str, ...] = (),
) -> Outcome:
    """Run a command job; `devices` are its GPUs as the job should see them (UUIDs, or NVML indices).

    It ends only once its process group and every process carrying its marker
    are gone; what survives SIGKILL is listed in `Outcome.survivors`.
    """
    assert job.argv is not None and control.mark is not None
    sink = CappedLog(log_path, log_max_bytes, attempt=job.attempts)
    try:
        env = job_environment(command_env(job.env, devices), job.env, pass_env)
        env[MARK_VAR] = control.mark
        try:
            command = await start_command(job.argv, env, job.cwd, sink)
        except OSError as exc:
            sink.write(f"slotdeck: cannot start {job.argv[0]!r}: {exc}\n".encode())
            return Outcome(JobState.failed, error=f"cannot start {job.argv[0]!r}: {exc}")
        control.started(command.pid)
        try:
            finished = await _wait_or_stop(command.exited, control, job.max_runtime_s)
            # the leader may be gone while its children live on: the whole group, and all it started, is the job
            survivors = await stop_job_processes(command.pid, control.mark, grace_s)
            await command.exited
            await asyncio.wait({command.pipe_closed}, timeout=PIPE_DRAIN_S)  # a process nobody could find
        finally:
            command.close()
        outcome = _command_outcome(command.returncode, finished, control)
        if survivors:
            outcome.survivors = survivors
            note = f"{len(survivors)} process(es) of the job survived SIGKILL: {', '.join(map(str, survivors))}"
            outcome.error = f"{outcome.error}; {note}" if outcome.error else note
        return outcome
    finally:
        sink.close()


def _command_outcome(code: int | None, finished: bool, control: RunControl) -> Outcome:
    if not finished:
        return control.stopped()
    if code == 0:
        return Outcome(JobState.succeeded, exit_code=0)
    assert code is not None
    return Outcome(JobState.failed, exit_code=code, error=describe_exit(code))
