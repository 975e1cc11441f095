"""Jobs as a Qt table model that stays smooth with 100,000 rows.

Updates touch only their own rows: new jobs arrive in one beginInsertRows at the
end, changed jobs emit dataChanged in place, never a model reset. Sorting is
done here with Python's sort on plain keys (numbers as numbers, blanks last)
rather than by QSortFilterProxyModel, which calls back into Python for every
comparison (11 s for 100,000 rows, against about half a second here including
the proxy's re-mapping). `JobsFilter` only filters and forwards the view's sort requests.
While sorted, rows that updates add or whose sort value changes are moved into
place by one coalesced layout change, spaced so that re-sorting takes at most
about a tenth of the GUI thread.

Stuck rule: a job is stuck when it is running and either the service's latest
snapshot reports its lease stuck (`LeaseInfo.stuck`) or, by this model's clock,
it has been running longer than its queue's `stuck_after_s`. Both halves are the
service's own criterion (a holder older than `stuck_after_s`); the local half
makes the highlight appear between snapshots, the snapshot half covers a job
whose queue configuration has not arrived yet.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt, QTimer
from PySide6.QtGui import QBrush, QColor

from embedded_service.model import Job, JobKind, JobState, Snapshot

from .formats import format_duration
from .table import ID_ROLE, HeaderedTable

log = logging.getLogger(__name__)

Index = QModelIndex | QPersistentModelIndex

RESORT_MIN_DELAY_MS = 200
RESORT_SHARE = 0.1
"""Longest share of the GUI thread that keeping a large table sorted under updates may take."""

STUCK_BRUSH = QBrush(QColor(255, 160, 0, 110))
"""Translucent amber: readable under both the light and the dark theme."""
FAILED_BRUSH = QBrush(QColor(207, 34, 46, 70))
"""Translucent red for failed and timed-out jobs, readable under both themes."""
FAILED_STATES = frozenset({JobState.failed, JobState.timed_out})


class Column(IntEnum):
    ID = 0
    STATE = 1
    QUEUE = 2
    OWNER = 3
    COMMAND = 4
    PRIORITY = 5
    ATTEMPTS = 6
    TIME = 7
    EXIT = 8
    DEVICES = 9
    USAGE = 10


HEADERS = {
    Column.ID: "Id",
    Column.STATE: "State",
    Column.QUEUE: "Queue",
    Column.OWNER: "Owner",
    Column.COMMAND: "Command / task",
    Column.PRIORITY: "Priority",
    Column.ATTEMPTS: "Attempts",
    Column.TIME: "Age / runtime",
    Column.EXIT: "Exit",
    Column.DEVICES: "GPUs",
    Column.USAGE: "CPU / RSS",
}

_NUMERIC = frozenset({Column.PRIORITY, Column.ATTEMPTS, Column.TIME, Column.EXIT, Column.USAGE})
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_LAST_COLUMN = len(Column) - 1


def command_text(job: Job) -> str:
    """What the job runs: the argv as a shell would show it, or the task's name."""
    if job.kind == JobKind.command and job.argv:
        return shlex.join(job.argv)
    return job.task or ""


def elapsed(job: Job, now: float) -> float:
    """Runtime of a started job (to its end, or to now while it runs); age of one never started."""
    start = job.started_at if job.started_at is not None else job.created_at
    end = job.finished_at if job.finished_at is not None else now
    return end - start


def _usage_text(job: Job) -> str:
    parts = []
    if job.cpu_pct is not None:
        parts.append(f"{job.cpu_pct:.0f}%")
    if job.rss_mib is not None:
        parts.append(f"{job.rss_mib:.0f} MiB")
    return " / ".join(parts)


def _display(job: Job, column: int, now: float) -> str:
    match column:
        case Column.ID:
            return job.id
        case Column.STATE:
            return job.state.value
        case Column.QUEUE:
            return job.queue
        case Column.OWNER:
            return job.owner or ""
        case Column.COMMAND:
            return command_text(job)
        case Column.PRIORITY:
            return str(job.priority)
        case Column.ATTEMPTS:
            return f"{job.attempts}/{job.max_attempts}"
        case Column.TIME:
            return format_duration(elapsed(job, now))
        case Column.EXIT:
            return "" if job.exit_code is None else str(job.exit_code)
        case Column.DEVICES:
            return ",".join(map(str, job.devices))
        case _:
            return _usage_text(job)


def sort_key(job: Job, column: int, now: float) -> Any:
    """The value a column sorts by: numbers for numeric columns (None when blank), text otherwise."""
    match column:
        case Column.PRIORITY:
            return job.priority
        case Column.ATTEMPTS:
            return job.attempts
        case Column.TIME:
            return elapsed(job, now)
        case Column.EXIT:
            return job.exit_code
        case Column.USAGE:
            return job.cpu_pct
        case Column.DEVICES:
            return job.devices
        case Column.COMMAND:
            return job.argv if job.kind == JobKind.command and job.argv else [job.task or ""]
        case _:
            return _display(job, column, now)


@dataclass(slots=True)
class _Row:
    job: Job
    search: str  # lower-cased once per update, not once per filter pass
    arrival: int  # the order of "unsorted"


def _search_text(job: Job) -> str:
    command = " ".join(job.argv) if job.argv else job.task or ""
    return "\0".join((job.id, job.owner or "", job.queue, command)).lower()


def contiguous_runs(rows: list[int]) -> Iterator[tuple[int, int]]:
    """Contiguous (first, last) ranges of sorted distinct rows, so neighbours share one signal."""
    if not rows:
        return
    start = prev = rows[0]
    for row in rows[1:]:
        if row != prev + 1:
            yield start, prev
            start = row
        prev = row
    yield start, prev


class JobsModel(HeaderedTable):
    """Jobs keyed by id, one row each, updated in place by `upsert` and kept in the requested sort order."""

    headers = tuple(HEADERS[column] for column in Column)

    def __init__(self, clock: Callable[[], float] = time.time, parent: Any = None) -> None:
        super().__init__(parent)
        self._clock = clock
        self._rows: list[_Row] = []
        self._row_of: dict[str, int] = {}
        self._arrivals = 0
        self._sort_column = -1
        self._sort_order = Qt.SortOrder.AscendingOrder
        self._stuck_after: dict[str, float | None] = {}
        self._stuck_jobs: frozenset[str] = frozenset()
        self._resort_timer = QTimer(self)
        self._resort_timer.setSingleShot(True)
        self._resort_timer.setInterval(RESORT_MIN_DELAY_MS)
        self._resort_timer.timeout.connect(self._resort)

    # Qt interface

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        job = self._rows[index.row()].job
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(job, column, self._clock())
        if role == ID_ROLE:
            return job.id
        if role == Qt.ItemDataRole.BackgroundRole:
            if job.state in FAILED_STATES:
                return FAILED_BRUSH
            return STUCK_BRUSH if self.is_stuck(job) else None
        if role == Qt.ItemDataRole.TextAlignmentRole and column in _NUMERIC:
            return _RIGHT
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == Column.COMMAND:
                return command_text(job)
            if column == Column.STATE and job.error:
                return job.error
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Reorder rows by a column (-1: arrival order, newest first) and keep that order through later updates."""
        self._sort_column = column
        self._sort_order = order
        self._resort()

    # Feeding

    def upsert(self, jobs: Iterable[Job]) -> None:
        """Add new jobs in one insertion at the end and update known ones in place.

        When sorted, a batch that adds jobs or changes a sort value schedules one
        layout change that moves rows into place (selections follow their jobs).
        """
        new: dict[str, Job] = {}
        changed: set[int] = set()
        misplaced = False
        column, now = self._sort_column, self._clock()
        for job in jobs:
            row = self._row_of.get(job.id)
            if row is None:
                new[job.id] = job
                continue
            entry = self._rows[row]
            if entry.job == job:
                continue
            if column >= 0 and not misplaced:
                misplaced = sort_key(entry.job, column, now) != sort_key(job, column, now)
            entry.job = job
            entry.search = _search_text(job)
            changed.add(row)
        for first_row, last_row in contiguous_runs(sorted(changed)):
            self.dataChanged.emit(self.index(first_row, 0), self.index(last_row, _LAST_COLUMN))
        if new:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for row, (job_id, job) in enumerate(new.items(), start=first):
                self._row_of[job_id] = row
                self._rows.append(_Row(job, _search_text(job), self._arrivals))
                self._arrivals += 1
            self.endInsertRows()
        if (new or (column >= 0 and misplaced)) and not self._resort_timer.isActive():
            self._resort_timer.start()

    def remove(self, job_ids: Iterable[str]) -> None:
        """Drop these jobs' rows (the server pruned them), one signal per run of neighbouring rows."""
        rows = sorted({row for row in map(self._row_of.get, job_ids) if row is not None})
        if not rows:
            return
        for first, last in reversed(list(contiguous_runs(rows))):
            self.beginRemoveRows(QModelIndex(), first, last)
            del self._rows[first : last + 1]
            self.endRemoveRows()
        self._row_of = {r.job.id: row for row, r in enumerate(self._rows)}

    def clear(self) -> None:
        """Forget every job (a different connection is being shown)."""
        self.beginResetModel()
        self._rows.clear()
        self._row_of.clear()
        self._stuck_jobs = frozenset()
        self.endResetModel()

    def set_stuck_after(self, stuck_after: dict[str, float | None]) -> None:
        """Per queue name, how long a job may run before it counts as stuck (None: never)."""
        if stuck_after != self._stuck_after:
            self._stuck_after = dict(stuck_after)
            if self._rows:
                self._restyle(0, len(self._rows) - 1)

    def set_stuck_jobs(self, job_ids: Iterable[str]) -> None:
        """Ids of the jobs whose leases the service reports stuck."""
        stuck = frozenset(job_ids)
        flipped = stuck ^ self._stuck_jobs
        self._stuck_jobs = stuck
        rows = sorted(row for row in map(self._row_of.get, flipped) if row is not None)
        for first_row, last_row in contiguous_runs(rows):
            self._restyle(first_row, last_row)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Take both stuck inputs from one snapshot: the queues' thresholds and the stuck leases."""
        self.set_stuck_after({q.config.name: q.config.stuck_after_s for q in snap.queues})
        self.set_stuck_jobs(lease.job_id for lease in snap.leases if lease.stuck and lease.job_id)

    def _restyle(self, first_row: int, last_row: int) -> None:
        # Background only: the filter proxy skips re-filtering for a role it does not filter on.
        roles = [Qt.ItemDataRole.BackgroundRole]
        self.dataChanged.emit(self.index(first_row, 0), self.index(last_row, _LAST_COLUMN), roles)

    def _resort(self) -> None:
        self._resort_timer.stop()
        started = time.perf_counter()
        column, now = self._sort_column, self._clock()
        if column < 0:
            order = sorted(self._rows, key=lambda r: r.arrival, reverse=True)  # newest first
        else:
            # Blanks (None) go last in both directions; the sort is stable, so ties keep their order.
            keyed = [(sort_key(r.job, column, now), r) for r in self._rows]
            blanks = [r for key, r in keyed if key is None]
            valued = [pair for pair in keyed if pair[0] is not None]
            valued.sort(key=lambda pair: pair[0], reverse=self._sort_order == Qt.SortOrder.DescendingOrder)
            order = [r for _, r in valued] + blanks
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        held = [(self._rows[i.row()].job.id, i.column()) for i in persistent]
        self._rows = order
        self._row_of = {r.job.id: row for row, r in enumerate(order)}
        self.changePersistentIndexList(persistent, [self.index(self._row_of[job_id], col) for job_id, col in held])
        self.layoutChanged.emit()
        took = time.perf_counter() - started
        self._resort_timer.setInterval(max(RESORT_MIN_DELAY_MS, round(took * 1000 / RESORT_SHARE)))
        log.debug("sorted %d jobs by column %d in %.3f s", len(order), column, took)

    # Lookups

    def job(self, row: int) -> Job:
        return self._rows[row].job

    def row_of(self, job_id: str) -> int | None:
        return self._row_of.get(job_id)

    def search_text(self, row: int) -> str:
        """Lower-cased id, owner, queue and command of the job at this row, for free-text filtering."""
        return self._rows[row].search

    def is_stuck(self, job: Job) -> bool:
        """The stuck rule of the module docstring."""
        if job.state != JobState.running:
            return False
        if job.id in self._stuck_jobs:
            return True
        limit = self._stuck_after.get(job.queue)
        return limit is not None and job.started_at is not None and self._clock() - job.started_at > limit


class JobsFilter(QSortFilterProxyModel):
    """Filters jobs by state, queue, owner and free text; sorting is forwarded to the source (see module docstring).

    An empty criterion lets everything through. filterAcceptsRow runs once per row
    on every filter change, so it only compares precomputed values.
    """

    def __init__(self, source: JobsModel, parent: Any = None) -> None:
        super().__init__(parent)
        self._source = source
        self._states: frozenset[JobState] = frozenset()
        self._queue = ""
        self._owner = ""
        self._text = ""
        self.setDynamicSortFilter(True)
        self.setSourceModel(source)

    def set_states(self, states: Iterable[JobState]) -> None:
        """Show only jobs in these states; an empty set shows all."""
        self._change("_states", frozenset(states))

    def set_queue(self, queue: str) -> None:
        """Show only this queue's jobs; "" shows all."""
        self._change("_queue", queue)

    def set_owner(self, owner: str) -> None:
        """Show only this owner's jobs; "" shows all."""
        self._change("_owner", owner)

    def set_text(self, text: str) -> None:
        """Show jobs whose id, owner, queue or command contains the text, ignoring case."""
        self._change("_text", text.strip().lower())

    def _change(self, attribute: str, value: object) -> None:
        # invalidate() re-maps in one layout change; an incremental filter change would emit one
        # insert or remove per run of rows (thousands on 100k jobs) and took 3-8 times longer.
        if getattr(self, attribute) != value:
            setattr(self, attribute, value)
            self.invalidate()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        job = self._source.job(source_row)
        if self._states and job.state not in self._states:
            return False
        if self._queue and job.queue != self._queue:
            return False
        if self._owner and job.owner != self._owner:
            return False
        return not self._text or self._text in self._source.search_text(source_row)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """The source sorts (Python's sort); this proxy keeps the source's order."""
        self._source.sort(column, order)

    def job(self, row: int) -> Job:
        """The job shown at this row."""
        return self._source.job(self.mapToSource(self.index(row, 0)).row())

    def row_of(self, job_id: str) -> int | None:
        """The row showing this job, or None when it is unknown or filtered out."""
        source_row = self._source.row_of(job_id)
        if source_row is None:
            return None
        row = self.mapFromSource(self._source.index(source_row, 0)).row()
        return None if row < 0 else row
