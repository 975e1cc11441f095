"""Per-job log files: size-capped while written, tail and byte ranges served on request.

A file that reaches its cap is renamed to `<id>.log.1` (replacing an older
one) and a fresh `<id>.log` starts, so a chatty job keeps its latest output
and never uses more than twice the cap on disk.

Beside it, `<id>.log.index` (0600, written by the service only, one JSON object a line) records where each
attempt began and where each file started, as positions in the job's whole output ("log positions": bytes
written since its first attempt, rotations included). Attempt boundaries come from this file, never from
the output, so nothing a job prints can pass for one; and a reader pages back by position through any size.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..private import open_private_append, private_dir

log = logging.getLogger("slotdeck.jobs")

_BLOCK = 64 * 1024


class CappedLog:
    """Appends a job's output; written from the event loop in small chunks."""

    def __init__(self, path: Path, max_bytes: int, attempt: int | None = None) -> None:
        """Open (append to) the log at `path`; `attempt` (1-based) records in the index where that attempt's
        output begins."""
        self.path = path
        self.max_bytes = max_bytes
        private_dir(path.parent, ours=False)
        self._file = open(open_private_append(path), "ab", buffering=0)  # noqa: SIM115 (closed by close())
        self._size = self._file.tell()
        self._base = read_index(path).starts[-1]  # log position of this file's first byte
        self._mid_line = False
        self._failing = False
        self.dropped = 0  # bytes of output lost to a disk that refused them
        if attempt is not None:
            self._record({"attempt": attempt, "at": self._base + self._size})

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
        self._base += self._size
        self._size = 0
        self._record({"rotated_at": self._base})

    def _record(self, entry: dict[str, int]) -> None:
        with open(open_private_append(index_path(self.path)), "ab", buffering=0) as index:
            index.write(json.dumps(entry).encode() + b"\n")

    def close(self) -> None:
        self._file.close()


def previous_path(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def index_path(path: Path) -> Path:
    return path.with_name(path.name + ".index")


INDEX_MAX_BYTES = 4 * 1024 * 1024  # an index is a line per attempt and per rotation; more is not ours


@dataclass(frozen=True)
class LogIndex:
    """What `<id>.log.index` says: (attempt, log position where it began), oldest first, and the log position
    where each file generation began (starts[-1]: the current `<id>.log`; [0] until the first rotation)."""

    attempts: tuple[tuple[int, int], ...] = ()
    starts: tuple[int, ...] = (0,)


def read_index(path: Path) -> LogIndex:
    """The index beside the log at `path` (empty for a log without one); lines that do not parse are skipped."""
    try:
        with open(index_path(path), "rb") as f:
            raw = f.read(INDEX_MAX_BYTES)
    except FileNotFoundError:
        return LogIndex()
    attempts: list[tuple[int, int]] = []
    starts = [0]
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("rotated_at"), int):
            starts.append(entry["rotated_at"])
        elif isinstance(entry, dict) and isinstance(entry.get("attempt"), int) and isinstance(entry.get("at"), int):
            attempts.append((entry["attempt"], entry["at"]))
    return LogIndex(tuple(attempts), tuple(starts))


@dataclass(frozen=True)
class LogPage:
    """Whole lines of a job's output between log positions `start` and `end`, cut where attempts begin:
    `parts` is (attempt that begins at the part's first byte, or None, text). `first` is the earliest position
    still kept (earlier output was rotated away); `start == first` means the page reaches the first kept line."""

    start: int
    end: int
    first: int
    parts: tuple[tuple[int | None, str], ...]


def read_page(path: Path, before: int | None, max_bytes: int) -> LogPage:
    """At most `max_bytes` of whole lines ending at log position `before` (None: the end of the log), from the
    current and the rotated file; a single line longer than `max_bytes` comes cut to its last `max_bytes`."""
    index = read_index(path)
    current = _size(path)
    older = _size(previous_path(path))
    start_current = index.starts[-1]
    first = start_current - older if older else start_current
    end_all = start_current + current
    end = end_all if before is None else max(first, min(before, end_all))
    start = max(first, end - max_bytes)
    lo = start - 1 if start > first else start  # one byte more: is `start` the beginning of a line?
    data = _read_span(path, lo - start_current, end - start_current) if end > start_current else b""
    if lo < start_current:
        data = _read_span(previous_path(path), lo - first, min(end, start_current) - first) + data
    if lo < start:
        cut = 0 if data[:1] == b"\n" else data.find(b"\n")  # inside a line: begin at the next, if the page holds one
        if 0 <= cut < len(data) - 1:
            data, start = data[cut + 1 :], lo + cut + 1
        else:
            data = data[1:]
    # an attempt that began at `end` belongs to the next page, unless this page is the log's end (nothing written yet)
    begins = {at: n for n, at in index.attempts if start <= at < end or at == end == end_all}
    points = sorted({start, *begins})
    parts: list[tuple[int | None, str]] = []
    for lo, hi in zip(points, [*points[1:], end], strict=True):
        if hi > lo or lo in begins:
            parts.append((begins.get(lo), data[lo - start : hi - start].decode("utf-8", errors="replace")))
    return LogPage(start, end, first, tuple(parts))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_span(path: Path, lo: int, hi: int) -> bytes:
    """Bytes [lo, hi) of a file (fewer if it is shorter, none if it is gone)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, lo))
            return f.read(max(0, hi - max(0, lo)))
    except FileNotFoundError:
        return b""


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
    for candidate in (path, previous_path(path), index_path(path)):
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
