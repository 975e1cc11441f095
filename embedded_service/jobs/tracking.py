"""Finding every process of a command job, also those that left its process group or session.

A job's process group misses members that called `setsid()` or `setpgid()`
(daemonising grandchildren, some launchers). Every command job therefore gets
a marker in its environment, `SLOTDECK_JOB_MARK=<job id>.<attempt>` (job ids
carry a random per-service prefix), which its
descendants inherit whatever group they join; this module finds the live
processes that carry it by reading `/proc/<pid>/environ` (Linux; other systems
fall back to the process group alone). A process that empties its own
environment is still found while the job's leader runs (its descendants are
stopped too); once reparented away from it, or run as another user, it cannot
be found; the job reports what it could not stop (`Job.survivors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Collection, Iterable
from pathlib import Path

import psutil

from .process import group_alive

log = logging.getLogger("slotdeck.jobs.tracking")

MARK_VAR = "SLOTDECK_JOB_MARK"
KILL_WAIT_S = 5.0  # after SIGKILL, how long processes get to disappear before they are reported as survivors
_POLL_S = 0.05


def job_mark(job_id: str, attempt: int) -> str:
    """The marker of one run of a job (a retry gets a new one); a restarted service recomputes it from the store."""
    return f"{job_id}.{attempt}"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def marked_pids(marks: Collection[str]) -> dict[str, set[int]]:
    """The live processes carrying each marker, in one pass over /proc (empty sets where /proc is missing)."""
    found: dict[str, set[int]] = {mark: set() for mark in marks}
    if not marks or not os.path.isdir("/proc"):
        return found
    wanted = {f"{MARK_VAR}={mark}".encode(): mark for mark in marks}
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if MARK_VAR.encode() not in environ:
            continue
        for entry in environ.split(b"\0"):
            mark = wanted.get(entry)
            if mark is not None and _alive(int(name)):
                found[mark].add(int(name))
    return found


def _signal_all(pgid: int | None, group: bool, pids: Iterable[int], sig: int) -> None:
    """Signal the group (while it has members) and each marked process; gone or foreign ones are skipped."""
    if group and pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _descendants(leader: int | None) -> set[int]:
    """The live descendants of the job's leader: also those that left its group and emptied their environment
    (`setsid env -i ...`), found while the leader that started them still runs."""
    if leader is None or not group_alive(leader):  # a pid still in use as a group id is never reused: the leader
        return set()
    try:
        return {child.pid for child in psutil.Process(leader).children(recursive=True)}
    except psutil.Error:
        return set()


def _left(pgid: int | None, mark: str, tree: frozenset[int] = frozenset()) -> tuple[bool, set[int]]:
    return pgid is not None and group_alive(pgid), marked_pids([mark])[mark] | {pid for pid in tree if _alive(pid)}


async def _wait_gone(pgid: int | None, mark: str, timeout_s: float, tree: frozenset[int]) -> tuple[bool, set[int]]:
    deadline = time.monotonic() + timeout_s
    while True:
        group, marked = await asyncio.to_thread(_left, pgid, mark, tree)
        if (not group and not marked) or time.monotonic() >= deadline:
            return group, marked
        await asyncio.sleep(_POLL_S)


async def stop_job_processes(pgid: int | None, mark: str, grace_s: float) -> list[int]:
    """Stop a job's process group and every process carrying its marker; return the pids still alive after.

    `pgid` None: only the marked processes (the group is not known to be the job's any more).
    SIGTERM to all, SIGKILL to what is left after `grace_s`, then up to
    `KILL_WAIT_S` for them to go. Processes found after that are returned
    (the caller reports them); an empty list means nothing of the job is left.
    """
    tree = frozenset(await asyncio.to_thread(_descendants, pgid))  # pgid is the leader's pid (a new session)
    group, marked = await asyncio.to_thread(_left, pgid, mark, tree)
    if not group and not marked:
        return []
    _signal_all(pgid, group, marked, signal.SIGTERM)
    group, marked = await _wait_gone(pgid, mark, grace_s, tree)
    if not group and not marked:
        return []
    log.info("job processes (group %s, %d marked) ignored SIGTERM for %.1fs; sending SIGKILL", pgid, len(marked), grace_s)
    deadline = time.monotonic() + KILL_WAIT_S
    while group or marked:
        _signal_all(pgid, group, marked, signal.SIGKILL)
        if time.monotonic() >= deadline:
            break
        group, marked = await _wait_gone(pgid, mark, min(0.5, max(0.0, deadline - time.monotonic())), tree)
    if not group and not marked:
        return []
    survivors = set(marked) | (_group_members(pgid) if group and pgid is not None else set())
    log.error("job processes survive SIGKILL: %s", sorted(survivors))
    return sorted(survivors)


def _group_members(pgid: int) -> set[int]:
    members = set()
    if os.path.isdir("/proc"):
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    stat = Path(f"/proc/{name}/stat").read_bytes()
                except OSError:
                    continue
                fields = stat[stat.rfind(b")") + 2 :].split()
                if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                    members.add(int(name))
    return members or {pgid}
