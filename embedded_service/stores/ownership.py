"""One owner per store: an OS-level exclusive lock beside the SQLite file, held for the owner's lifetime.

The service that runs jobs, recovers orphans and writes the local token must be
the only one on its store. It takes `fcntl.flock(LOCK_EX)` on `<db>.lock`; the
kernel drops the lock when the process exits in any way (`kill -9` included),
so nothing stale is ever left behind. Who owns the store (pid, URL once it
serves) is written to the sidecar `<db>.owner.json` (replaced atomically, so a
reader never sees half of it). A second service gets `StoreLocked` at once,
naming the owner. Read-only tools open the store without the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ..errors import StoreLocked
from .faults import classify
from .sqlite import StoreUnavailable

if sys.platform == "win32":  # no flock: msvcrt's byte-range lock (exclusive only), also dropped when the process dies
    import msvcrt

    def _lock(fd: int, exclusive: bool) -> None:
        """Lock without waiting; BlockingIOError when another process holds it."""
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            raise BlockingIOError(str(exc)) from None

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int, exclusive: bool) -> None:
        """Lock without waiting; BlockingIOError when another process holds it."""
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


TAKE_RETRY_S = 0.3  # a peek (`current_owner`) holds a shared lock for microseconds: an owner retries this long


@dataclass(frozen=True, slots=True)
class OwnerInfo:
    """Who owns a store: `pid`, `url` (None until it serves HTTP, or never for an embedded service), `since` (epoch s)."""

    pid: int | None
    url: str | None = None
    since: float | None = None


def _lock_path(db: Path) -> Path:
    """`<db>.lock` beside the database file itself: a symlink to the database (or a path through one) is followed,
    so every name of one store locks one file. (SQLite follows it too: its `-wal` is beside the real file.)"""
    real = Path(os.path.realpath(db))
    return real.with_name(real.name + ".lock")


def lock_path_for(store: Any) -> Path | None:
    """The lock file of a store that lives in a file (`<db>.lock`); None for stores shared by design (memory, Redis)."""
    path = getattr(store, "path", None)
    if not isinstance(path, Path) or not str(getattr(store, "url", "")).startswith("sqlite:"):
        return None
    return _lock_path(path)


def _owner_file(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name.removesuffix(".lock") + ".owner.json")


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _still_owns(info: OwnerInfo) -> bool:
    """Whether the process the owner file names is still the one that wrote it: running (not a zombie) and started
    before it took the store (a pid reused by a newer process is not)."""
    if info.pid is None or info.since is None:
        return False
    try:
        process = psutil.Process(info.pid)
        with process.oneshot():
            status, started_at = process.status(), process.create_time()
    except psutil.Error:
        return False
    return status not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD) and started_at <= info.since + 1.0


def read_owner(lock_path: Path) -> OwnerInfo:
    """What the sidecar says about the owner; a pid that no longer lives (an owner just starting) reads as unknown."""
    try:
        data = json.loads(_owner_file(lock_path).read_text(encoding="utf-8"))
        info = OwnerInfo(pid=int(data["pid"]), url=data.get("url") or None, since=data.get("since"))
    except (OSError, ValueError, KeyError, TypeError):
        return OwnerInfo(pid=None)
    if info.pid is not None and not _pid_alive(info.pid):
        return OwnerInfo(pid=None)
    return info


def current_owner(lock_path: Path) -> OwnerInfo | None:
    """The owner of the store whose lock file this is, or None when no process owns it. Never blocks.

    Takes a shared lock for an instant to find out, so it never looks like an owner itself.
    """
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    try:
        try:
            _lock(fd, exclusive=False)
        except BlockingIOError:
            return read_owner(lock_path)
        _unlock(fd)
        return None
    finally:
        os.close(fd)


class StoreLock:
    """The owner's hold on a store. `take()` or `StoreLocked`; `announce(url)` once serving; `release()` at close."""

    def __init__(self, lock_path: Path, store_desc: str) -> None:
        self.path = lock_path
        self.store_desc = store_desc
        self._fd: int | None = None
        self.info: OwnerInfo | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def take(self) -> StoreLock:
        """Lock the store for this process, or raise `StoreLocked` naming the owner (at once, give or take a peek)."""
        if self._fd is not None:
            return self
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, made = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
            except FileExistsError:
                fd, made = os.open(self.path, flags), False
        except OSError as exc:
            cause = classify(exc)
            why = f"{cause}: {exc.strerror}" if cause and exc.strerror else exc.strerror or str(exc)
            raise StoreUnavailable(f"cannot lock store {self.store_desc}: {why} ({self.path})") from None
        deadline = time.monotonic() + TAKE_RETRY_S
        while True:
            try:
                _lock(fd, exclusive=True)
                break
            except BlockingIOError:
                owner = read_owner(self.path)
                if owner.pid is not None or time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreLocked(self.store_desc, owner.pid, owner.url) from None
                time.sleep(0.02)
        recorded = read_owner(self.path) if made else OwnerInfo(pid=None)
        if recorded.pid != os.getpid() and _still_owns(recorded):
            # a new lock file while the owner file names a running owner: its lock file was removed (a clean-up of
            # "stale" lock files) while it runs, so this lock is on another file, but the store is still its
            _unlock(fd)
            os.close(fd)
            raise StoreLocked(self.store_desc, recorded.pid, recorded.url)
        self._fd = fd
        self._write(OwnerInfo(pid=os.getpid(), url=None, since=time.time()))
        return self

    def announce(self, url: str) -> None:
        """Record where the owner serves, for a second process to connect to instead."""
        if self._fd is not None and self.info is not None:
            self._write(OwnerInfo(pid=self.info.pid, url=url, since=self.info.since))

    def _write(self, info: OwnerInfo) -> None:
        self.info = info
        target = _owner_file(self.path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.unlink(missing_ok=True)  # never write through what is there (a planted symlink): a new file or nothing
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"pid": info.pid, "url": info.url, "since": info.since}, fh)
            os.replace(tmp, target)
        except OSError:  # the lock still holds; only the name of the owner is missing for others
            with contextlib.suppress(OSError):
                tmp.unlink()

    def release(self) -> None:
        """Give the store up (the lock file stays: removing it would let two owners lock two different files)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            _owner_file(self.path).unlink()
        os.close(fd)


def take_ownership(store: Any) -> StoreLock | None:
    """Lock `store` for this process if it lives in a file; None for stores without an owner."""
    path = lock_path_for(store)
    if path is None:
        return None
    return StoreLock(path, str(getattr(store, "path", path))).take()


def lock_path_for_url(store_url: str) -> Path | None:
    """`lock_path_for` from a store URL (None for a store that is not a file)."""
    if not store_url.startswith("sqlite:"):
        return None
    from .sqlite import path_from_url

    return _lock_path(path_from_url(store_url))


def wait_for_owner_url(store_url: str, timeout_s: float = 15.0) -> OwnerInfo | None:
    """The owner of a store once it says where it serves (an owner may still be starting); None when the store
    has no owner any more, or the owner gave no URL within `timeout_s` (it serves no HTTP API)."""
    lock_path = lock_path_for_url(store_url)
    if lock_path is None:
        return None
    deadline = time.monotonic() + timeout_s
    while True:
        owner = current_owner(lock_path)
        if owner is None or owner.url is not None or time.monotonic() >= deadline:
            return owner
        time.sleep(0.1)
