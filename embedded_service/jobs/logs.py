"""Per-job log files: size-capped while written, tail served on request.

A file that reaches its cap is renamed to `<id>.log.1` (replacing an older
one) and a fresh `<id>.log` starts, so a chatty job keeps its latest output
and never uses more than twice the cap on disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from ..private import open_private_append, private_dir

log = logging.getLogger("slotdeck.jobs")

_BLOCK = 64 * 1024


class CappedLog:
    """Appends a job's output; written from the event loop in small chunks."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        private_dir(path.parent, ours=False)
        self._file = open(open_private_append(path), "ab", buffering=0)  # noqa: SIM115 (closed by close())
        self._size = self._file.tell()
        self._mid_line = False
        self._failing = False
        self.dropped = 0  # bytes of output lost to a disk that refused them

    def write(self, data: bytes) -> None:
        """Append output; while the disk refuses it (full, read-only) the output is dropped, said once per job."""
        try:
            self._write(data)
        except OSError as exc:
            self.dropped += len(data)
            if not self._failing:
                self._failing = True
                log.warning("job log %s: output dropped while the disk refuses it: %s", self.path.name, exc.strerror)
        else:
            self._failing = False

    def _write(self, data: bytes) -> None:
        if not data:
            return
        if len(data) > self.max_bytes:  # only the end of an oversized chunk fits; start it at a line
            cut = data.find(b"\n", len(data) - self.max_bytes)
            data = data[cut + 1 :] if cut >= 0 else data[-self.max_bytes :]
            if self._mid_line:  # what followed the cut-off line is gone: end it where it stops
                self._file.write(b"\n")
            if self._size > 0:
                self._rotate()
        elif self._size + len(data) > self.max_bytes and self._size > 0:
            self._rotate()
        self._file.write(data)
        self._size += len(data)
        self._mid_line = not data.endswith(b"\n")

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, previous_path(self.path))
        self._file = open(open_private_append(self.path), "ab", buffering=0)  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self._file.close()


def previous_path(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def _tail_lines(path: Path, wanted: int) -> list[bytes]:
    """The last `wanted` lines of a file, reading backwards in blocks (never the whole file)."""
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        data = b""
        position = end
        while position > 0 and data.count(b"\n") <= wanted:
            step = min(_BLOCK, position)
            position -= step
            f.seek(position)
            data = f.read(step) + data
    lines = data.splitlines(keepends=True)
    return lines[-wanted:] if wanted else []


def read_tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a job's output, across the current and the rotated file."""
    recent = _tail_lines(path, lines)
    if len(recent) < lines:
        # one line more from the older file: a line cut by the rotation is joined back below
        older = _tail_lines(previous_path(path), lines - len(recent) + 1)
        recent = b"".join(older + recent).splitlines(keepends=True)[-lines:]
    return b"".join(recent).decode("utf-8", errors="replace")


def remove_log(path: Path) -> None:
    for candidate in (path, previous_path(path)):
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
