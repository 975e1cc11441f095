"""Knobs of the job runner, with the defaults a single workstation or small server wants."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobSettings:
    """How jobs are fed to the engine, stopped, retried, logged and pruned."""

    log_dir: Path | None = None  # None: next to the SQLite file, or a temp dir for memory://
    log_max_bytes: int = 8 * 1024 * 1024  # per log file; one older file is kept, so at most twice this on disk
    kill_grace_s: float = 10.0  # SIGTERM to the process group, then SIGKILL after this
    retry_backoff_s: float = 1.0  # first retry delay; doubles per attempt
    retry_backoff_max_s: float = 300.0
    keep_finished_s: float | None = 7 * 86_400.0  # finished jobs (and logs) older than this are pruned
    keep_finished: int | None = 10_000  # and beyond the newest this many
    prune_every_s: float = 60.0
    window: int = 64  # queued jobs per queue held as engine waiters (at least twice the queue's limit)
    poll_s: float = 1.0  # how often due retries are looked for and live figures refreshed
    task_threads: int = 16  # threads for sync task callables
    pass_env: tuple[str, ...] = ()  # service variables (globs) command jobs get besides environment.MINIMAL

    def __post_init__(self) -> None:
        if self.log_max_bytes < 1024:
            raise ValueError("log_max_bytes must be at least 1024")
        if self.window < 1 or self.task_threads < 1:
            raise ValueError("window and task_threads must be at least 1")
        for name in ("kill_grace_s", "retry_backoff_s", "retry_backoff_max_s", "prune_every_s", "poll_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
