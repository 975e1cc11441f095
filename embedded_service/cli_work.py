"""`slotdeck waiters | leases | job show | retry` and the waiting of `submit --wait`.

Waiters and leases come from one snapshot, so their ids are the ones
`slotdeck cancel --waiter/--lease ID` takes. Text output is in human units;
`--json` prints the exact objects.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from . import cli_format as fmt
from .model import JobState

WAIT_POLL_MIN_S = 0.2
WAIT_POLL_MAX_S = 2.0

EXIT_JOB_TIMED_OUT = 124  # as timeout(1)
EXIT_JOB_CANCELLED = 130  # as a program stopped by Ctrl-C
EXIT_JOB_FAILED = 1  # a failed task (no process exit code) or an interrupted job out of attempts


def job_exit_code(job: Any) -> int:
    """The exit code `submit --wait` and `retry --wait` return for a finished job.

    A command's own exit code (a signal N as 128+N); 1 for a failed task;
    124 when it ran past its max runtime; 130 when it was cancelled.
    """
    state = JobState(job.state)
    if state is JobState.succeeded:
        return 0
    if state is JobState.timed_out:
        return EXIT_JOB_TIMED_OUT
    if state is JobState.cancelled:
        return EXIT_JOB_CANCELLED
    code = job.exit_code
    if isinstance(code, int) and code != 0:
        return 128 - code if code < 0 else min(code, 255)
    return EXIT_JOB_FAILED


def wait_for_job(client: Any, job_id: str, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Poll the job until it has finished (backing off to one read per 2 s); returns it."""
    delay = WAIT_POLL_MIN_S
    while True:
        job = client.job(job_id)
        state = JobState(job.state)
        if state.finished or (state is JobState.interrupted and job.attempts >= job.max_attempts):
            return job
        sleep(delay)
        delay = min(delay * 1.5, WAIT_POLL_MAX_S)


def finish_waiting(client: Any, job: Any, json_out: bool, emit_json: Callable[[Any], None]) -> int:
    """`--wait`: block until the job ends, report it, and return its exit code."""
    try:
        done = wait_for_job(client, job.id)
    except KeyboardInterrupt:
        print(f"slotdeck: stopped waiting; job {job.id} goes on (slotdeck cancel {job.id})", file=sys.stderr)
        return 130
    if json_out:
        emit_json(done)
    else:
        code = f" (exit {done.exit_code})" if done.exit_code is not None else ""
        error = f": {done.error}" if done.error and JobState(done.state) is not JobState.succeeded else ""
        print(f"job {done.id} {JobState(done.state).value}{code}{error}", file=sys.stderr)
    return job_exit_code(done)


# ---------------------------------------------------------------- tables


def show_leases(snap: Any, queue: str | None, table: Callable[..., str]) -> str:
    now = snap.at
    rows = [
        [
            lease.id,
            lease.queue,
            lease.owner,
            lease.priority,
            fmt.duration(now - lease.granted_at),
            fmt.duration(lease.waited_s),
            fmt.gpus(lease.devices),
            fmt.mib(lease.gpu_mem_mib) if lease.gpu_mem_mib else None,
            fmt.within(lease.expires_at, now),
            lease.job_id,
            "stuck" if lease.stuck else "",
        ]
        for lease in snap.leases
        if queue is None or lease.queue == queue
    ]
    headers = ["ID", "QUEUE", "OWNER", "PRIO", "HELD", "WAITED", "DEVICES", "GPU MEM", "EXPIRES", "JOB", "STUCK"]
    return table(headers, rows)


def show_waiters(snap: Any, queue: str | None, table: Callable[..., str]) -> str:
    now = snap.at
    rows = [
        [
            w.id,
            w.queue,
            w.position,
            w.owner,
            w.priority,
            fmt.duration(now - w.enqueued_at),
            w.gpus or None,
            fmt.mib(w.gpu_mem_mib) if w.gpu_mem_mib else None,
            fmt.within(w.deadline, now),
            w.job_id,
        ]
        for w in snap.waiters
        if queue is None or w.queue == queue
    ]
    return table(["ID", "QUEUE", "POS", "OWNER", "PRIO", "WAITING", "GPUS", "GPU MEM", "GIVES UP", "JOB"], rows)


def describe_job(job: Any, now: float) -> str:
    """A job as 'field  value' lines in human units."""
    what = job.task if job.task else " ".join(job.argv or [])
    end = job.finished_at if job.finished_at is not None else (now if job.started_at is not None else None)
    took = fmt.duration(end - job.started_at) if job.started_at is not None and end is not None else None
    lines: list[tuple[str, Any]] = [
        ("id", job.id),
        ("state", JobState(job.state).value),
        ("kind", job.kind.value if hasattr(job.kind, "value") else job.kind),
        ("what", what),
        ("queue", job.queue),
        ("owner", job.owner),
        ("priority", job.priority),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("created", f"{fmt.when(job.created_at)} ({fmt.ago(job.created_at, now)})"),
        ("started", fmt.when(job.started_at)),
        ("finished", fmt.when(job.finished_at)),
        ("ran for", took),
        ("max runtime", fmt.duration(job.max_runtime_s)),
        ("exit code", job.exit_code),
        ("error", job.error),
        ("gpus", f"{job.gpus} ({fmt.mib(job.gpu_mem_mib)} each)" if job.gpus and job.gpu_mem_mib else job.gpus or None),
        ("devices", fmt.gpus(job.devices)),
        ("cwd", job.cwd),
        ("env", " ".join(f"{k}=…" for k in job.env) or None),  # values may be secrets
        ("pid", job.pid),
        ("cpu", fmt.pct(job.cpu_pct)),
        ("memory", fmt.mib(job.rss_mib)),
        ("gpu memory", fmt.mib(job.gpu_mem_used_mib)),
        ("lease", job.lease_id),
    ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines if v not in (None, ""))


# -------------------------------------------------------------- commands


def cmd_leases(args: argparse.Namespace, client: Any, emit_json: Callable[[Any], None], table: Callable[..., str]) -> int:
    snap = client.snapshot()
    if args.json:
        emit_json([lease for lease in snap.leases if args.queue is None or lease.queue == args.queue])
    else:
        print(show_leases(snap, args.queue, table))
    return 0


def cmd_waiters(args: argparse.Namespace, client: Any, emit_json: Callable[[Any], None], table: Callable[..., str]) -> int:
    snap = client.snapshot()
    if args.json:
        emit_json([w for w in snap.waiters if args.queue is None or w.queue == args.queue])
    else:
        print(show_waiters(snap, args.queue, table))
    return 0


def cmd_job_show(args: argparse.Namespace, client: Any, emit_json: Callable[[Any], None]) -> int:
    job = client.job(args.job)
    if args.json:
        emit_json(job)
    else:
        print(describe_job(job, time.time()))
    return 0


def cmd_retry(args: argparse.Namespace, client: Any, emit_json: Callable[[Any], None]) -> int:
    job = client.retry(args.job)
    if args.wait:
        if not args.json:
            print(job.id)
            sys.stdout.flush()
        return finish_waiting(client, job, args.json, emit_json)
    emit_json(job) if args.json else print(job.id)
    return 0


WAIT_HELP = (
    "wait until the job ends and exit with its code: the command's own exit code (signal N: 128+N), "
    "1 for a failed task, 124 past --max-runtime-s, 130 when cancelled"
)


def add_work_parsers(
    sub: Any, common: argparse.ArgumentParser, run: Callable[..., Callable[[argparse.Namespace], int]]
) -> None:
    """Adds `leases`, `waiters`, `job show` and `retry`; `run(fn)` wraps a handler taking (args, client, ...)."""
    p = sub.add_parser("leases", parents=[common], help="granted slots with their ids (for cancel --lease)")
    p.add_argument("--queue", help="only this queue")
    p.set_defaults(func=run(cmd_leases, with_table=True))
    p = sub.add_parser("waiters", parents=[common], help="requests waiting for a slot, with ids (for cancel --waiter)")
    p.add_argument("--queue", help="only this queue")
    p.set_defaults(func=run(cmd_waiters, with_table=True))
    p = sub.add_parser("job", help="one job's details (slotdeck job show ID)")
    actions = p.add_subparsers(dest="job_action", metavar="ACTION", required=True)
    q = actions.add_parser("show", parents=[common], help="state, outcome, times and live figures of a job")
    q.add_argument("job", help="job id")
    q.set_defaults(func=run(cmd_job_show))
    p = sub.add_parser("retry", parents=[common], help="submit a new job with a finished job's spec")
    p.add_argument("job", help="id of a finished (failed, cancelled, timed out or succeeded) job")
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)
    p.set_defaults(func=run(cmd_retry))
