"""Command jobs as processes: own process group, GPU visibility, output capture, group stop.

Each command starts a new session (so it leads its own process group) and
everything it spawns is stopped together: SIGTERM to the group, SIGKILL after
a grace period. "Gone" means no live (non-zombie) process is left in the
group, so a slot is handed back only when the work has really stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import psutil

from .gpu_env import cuda_env
from .logs import CappedLog

log = logging.getLogger("slotdeck.jobs.process")

_POLL_S = 0.02


def command_env(job_env: Mapping[str, str], devices: Sequence[int | str]) -> dict[str, str]:
    """The service's environment, the job's own variables, and only the granted GPUs visible (UUIDs or indices)."""
    env = dict(os.environ)
    env.update(job_env)
    env.update(cuda_env(devices))
    return env


class RunningCommand(asyncio.SubprocessProtocol):
    """A started command: its output goes straight to the log; `exited` resolves when the leader exits.

    The leader's exit is watched on its own: children that inherited the pipe
    may keep it open long after, and they are the group's business.
    """

    def __init__(self, sink: CappedLog) -> None:
        loop = asyncio.get_running_loop()
        self.sink = sink
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipe_closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport has SubprocessTransport's methods without being one of its subclasses
        self.transport = cast(asyncio.SubprocessTransport, transport)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.sink.write(data if isinstance(data, bytes) else data.encode())

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.pipe_closed.done():
            self.pipe_closed.set_result(None)

    @property
    def pid(self) -> int:
        assert self.transport is not None
        return self.transport.get_pid()

    @property
    def returncode(self) -> int | None:
        return self.transport.get_returncode() if self.transport is not None else None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def start_command(argv: Sequence[str], env: Mapping[str, str], cwd: str | None, sink: CappedLog) -> RunningCommand:
    """Start a command in a new session, stdout and stderr into `sink`; OSError says why it could not start."""
    loop = asyncio.get_running_loop()
    _transport, command = await loop.subprocess_exec(
        lambda: RunningCommand(sink),
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )
    return command


def _live_member(pid: int, pgid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[2]) == pgid and fields[0] not in (b"Z", b"X")


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies waiting to be reaped do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True
    return any(name.isdigit() and _live_member(int(name), pgid) for name in os.listdir("/proc"))


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone, or not ours to signal
        os.killpg(pgid, sig)


async def wait_group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_S)
    return True


def is_job_group(pgid: int, started_at: float) -> bool:
    """Whether group `pgid` is still the one a job started at wall time `started_at`.

    Its leader (pid == pgid) must be alive and have been created within moments of the job's start, in
    this boot: a number reused by an unrelated program later (after a reboot, say) is never taken for it.
    """
    try:
        leader = psutil.Process(pgid)
        created = leader.create_time()
    except psutil.Error:
        return False
    return psutil.boot_time() < started_at and started_at - 2.0 <= created <= started_at + 30.0


async def stop_group(pgid: int, grace_s: float) -> None:
    """SIGTERM the whole group, SIGKILL what is left after `grace_s`, return once none is left."""
    if not group_alive(pgid):
        return
    signal_group(pgid, signal.SIGTERM)
    if await wait_group_gone(pgid, grace_s):
        return
    log.info("process group %d ignored SIGTERM for %.1fs; sending SIGKILL", pgid, grace_s)
    signal_group(pgid, signal.SIGKILL)
    while not await wait_group_gone(pgid, 5.0):
        log.error("process group %d survives SIGKILL (uninterruptible sleep?); still waiting", pgid)
        signal_group(pgid, signal.SIGKILL)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"
