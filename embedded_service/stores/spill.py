"""A pre-reserved file that keeps job outcomes a full disk would not take, until the next start stores them.

A job that ends while the store's disk is full has its outcome retried until
the store takes it; if the service is stopped first, that outcome would be
lost and the job would run again at the next start. So at open the SQLite
store reserves `SPILL_BYTES` next to its database (`<db>-spill`, 0600), written
out in full so its blocks are really allocated: overwriting them later needs
no free space. At close, what the store could not take is written there (its
length last), and the next open stores it in one transaction before anything
else reads the jobs, then clears the file.

Layout: an 8-byte little-endian payload length (0: empty), then the payload,
a JSON array of jobs. The length is written and synced after the payload, so
a crash mid-spill leaves the file empty or whole, never half-read. On a
copy-on-write file system (btrfs, ZFS) an overwrite may still need new blocks;
there the spill may fail too and the outcome is logged instead, as before.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from pathlib import Path

from pydantic import ValidationError

from ..model import Job
from ..private import FILE_MODE

log = logging.getLogger("slotdeck.stores")

SPILL_BYTES = 1 << 20  # room for ~1,000 typical outcomes; a job's result is bounded by its own limit
_HEADER = 8


class SpillFile:
    """The reserve file at `path`; every method does blocking file I/O (call it from a thread)."""

    def __init__(self, path: Path, size: int = SPILL_BYTES) -> None:
        self.path = path
        self.size = size

    def _open(self, flags: int) -> int:
        """A descriptor of the reserve itself, never of what a symlink planted in its place points at (that file
        would be overwritten with zeros); OSError naming the path when it is a symlink or not a regular file."""
        try:
            # O_NONBLOCK: a FIFO planted there would otherwise block the start for good (no effect on a file)
            extra = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
            fd = os.open(self.path, flags | extra, FILE_MODE)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(exc.errno, "a symbolic link, not SlotDeck's reserve", str(self.path)) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file, not SlotDeck's reserve", str(self.path))
        return fd

    def pending(self) -> list[Job]:
        """Jobs spilled by the previous service (empty when none, or no file). OSError for a reserve that is not
        SlotDeck's (a symlink, a directory); ValueError (one line) for one whose content is not what it wrote."""
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return []
        with os.fdopen(fd, "rb") as fh:
            length = int.from_bytes(fh.read(_HEADER) or b"\0", "little")
            if length > self.size - _HEADER:
                raise ValueError(f"its length field says {length} bytes, more than the reserve holds")
            payload = fh.read(length) if length else b""
        if len(payload) < length:
            raise ValueError(f"it is cut short ({len(payload)} of {length} bytes)")
        if not payload:
            return []
        try:
            return [Job.model_validate(item) for item in json.loads(payload)]
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"not a list of jobs ({exc.error_count()} error(s), first: {where}: {first['msg']})") from None

    def reserve(self) -> bool:
        """Create the file at its full size, empty (a no-op when it is there at that size). False (logged) when the
        disk has no room for it: outcomes then cannot be spilled until a later start reserves it."""
        try:
            fd = self._open(os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            log.warning("no reserve for job outcomes at %s: %s", self.path, exc)
            return False
        try:
            os.fchmod(fd, FILE_MODE)
            if os.fstat(fd).st_size != self.size:
                os.pwrite(fd, bytes(self.size), 0)  # real blocks, not a sparse file
            else:
                os.pwrite(fd, bytes(_HEADER), 0)
            os.fsync(fd)
            return True
        except OSError as exc:
            log.warning("no reserve for job outcomes at %s: %s", self.path, exc)
            os.close(fd)
            fd = -1
            self.path.unlink(missing_ok=True)
            return False
        finally:
            if fd >= 0:
                os.close(fd)

    def write(self, jobs: list[Job]) -> list[Job]:
        """Keep `jobs` in the reserved space, overwriting nothing but it; returns those that fit (all or a prefix)."""
        kept = list(jobs)
        while kept:
            payload = json.dumps([job.model_dump(mode="json") for job in kept]).encode()
            if len(payload) <= self.size - _HEADER:
                break
            kept.pop()
        if not kept:
            return []
        fd = self._open(os.O_WRONLY)  # no O_CREAT: only the space reserved at open is used
        try:
            if os.fstat(fd).st_size < self.size:
                return []
            os.pwrite(fd, payload, _HEADER)
            os.fsync(fd)
            os.pwrite(fd, len(payload).to_bytes(_HEADER, "little"), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        return kept
