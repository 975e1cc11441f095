"""Who is waiting and who holds a slot: two small tables fed by snapshots.

Each snapshot replaces the contents by id: rows that left are removed, new ones
appended and the others updated in place, so a row the operator has selected
(to cancel or force-release it) stays selected while snapshots keep coming.
Ages and time left are computed at paint time against an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from PySide6.QtCore import QModelIndex, Qt

from embedded_service.model import LeaseInfo, Snapshot, WaiterInfo

from .formats import format_duration
from .jobs import STUCK_BRUSH, contiguous_runs
from .table import ID_ROLE, HeaderedTable, Index


class HasId(Protocol):
    """A row item: anything with a string `id` (a waiter, a lease, a cluster instance or host)."""

    @property
    def id(self) -> str: ...


Item = TypeVar("Item", bound=HasId)

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
"""Role whose values sort as their type (numbers as numbers); for QSortFilterProxyModel.setSortRole."""

_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def _remaining(at: float | None, now: float) -> float | None:
    return None if at is None else max(0.0, at - now)


class ByIdTable(HeaderedTable, Generic[Item]):
    """Rows of items with an `id`, replaced wholesale by `_replace` but updated row by row."""

    numeric: ClassVar[frozenset[int]] = frozenset()

    def __init__(self, clock: Callable[[], float] = time.time, parent: Any = None) -> None:
        super().__init__(parent)
        self._clock = clock
        self._rows: list[Item] = []

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        item = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(item, index.column(), self._clock())
        if role == SORT_ROLE:
            return self._sort_value(item, index.column(), self._clock())
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() in self.numeric:
            return _RIGHT
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"id {item.id}"
        if role == ID_ROLE:
            return item.id
        return self._extra(item, role)

    def item(self, row: int) -> Item:
        return self._rows[row]

    def row_of(self, item_id: str) -> int | None:
        return next((row for row, item in enumerate(self._rows) if item.id == item_id), None)

    def _replace(self, items: Sequence[Item]) -> None:
        incoming = {item.id: item for item in items}
        gone = [row for row, item in enumerate(self._rows) if item.id not in incoming]
        for first, last in reversed(list(contiguous_runs(gone))):
            self.beginRemoveRows(QModelIndex(), first, last)
            del self._rows[first : last + 1]
            self.endRemoveRows()
        changed: list[int] = []
        for row, item in enumerate(self._rows):
            new = incoming.pop(item.id)
            if new != item:
                self._rows[row] = new
                changed.append(row)
        for first, last in contiguous_runs(changed):  # one signal per run: a grant moves every waiter's position
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(self.headers) - 1))
        if incoming:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(incoming) - 1)
            self._rows.extend(incoming.values())
            self.endInsertRows()

    def _display(self, item: Item, column: int, now: float) -> str:
        value = self._sort_value(item, column, now)
        return "" if value is None else str(value)

    def _sort_value(self, item: Item, column: int, now: float) -> Any:
        raise NotImplementedError

    def _extra(self, item: Item, role: int) -> Any:
        return None


class WaitersModel(ByIdTable[WaiterInfo]):
    """Requests waiting for a slot: queue, owner, priority, place in line, age and time left before their deadline."""

    QUEUE, OWNER, PRIORITY, POSITION, AGE, TIME_LEFT = range(6)
    headers = ("Queue", "Owner", "Priority", "Position", "Waiting for", "Time left")
    numeric = frozenset({PRIORITY, POSITION, AGE, TIME_LEFT})

    def apply_snapshot(self, snap: Snapshot) -> None:
        self._replace(snap.waiters)

    def waiter(self, row: int) -> WaiterInfo:
        return self.item(row)

    def _display(self, item: WaiterInfo, column: int, now: float) -> str:
        if column == self.AGE:
            return format_duration(now - item.enqueued_at)
        if column == self.TIME_LEFT:
            return "no deadline" if item.deadline is None else format_duration(_remaining(item.deadline, now))
        return super()._display(item, column, now)

    def _sort_value(self, item: WaiterInfo, column: int, now: float) -> Any:
        return (
            item.queue,
            item.owner or "",
            item.priority,
            item.position,
            now - item.enqueued_at,
            _remaining(item.deadline, now),
        )[column]


class LeasesModel(ByIdTable[LeaseInfo]):
    """Granted slots: queue, owner, fence, devices, how long held, when it expires, stuck, and the job holding it."""

    QUEUE, OWNER, FENCE, DEVICES, HELD, EXPIRES, STUCK, JOB = range(8)
    headers = ("Queue", "Owner", "Fence", "GPUs", "Held for", "Expires in", "Stuck", "Job")
    numeric = frozenset({FENCE, HELD, EXPIRES})

    def apply_snapshot(self, snap: Snapshot) -> None:
        self._replace(snap.leases)

    def lease(self, row: int) -> LeaseInfo:
        return self.item(row)

    def _display(self, item: LeaseInfo, column: int, now: float) -> str:
        if column == self.HELD:
            return format_duration(now - item.granted_at)
        if column == self.EXPIRES:
            return "" if item.expires_at is None else format_duration(_remaining(item.expires_at, now))
        if column == self.STUCK:
            return "stuck" if item.stuck else ""
        return super()._display(item, column, now)

    def _sort_value(self, item: LeaseInfo, column: int, now: float) -> Any:
        return (
            item.queue,
            item.owner or "",
            item.fence,
            ",".join(map(str, item.devices)),
            now - item.granted_at,
            _remaining(item.expires_at, now),
            int(item.stuck),
            item.job_id or "",
        )[column]

    def _extra(self, item: LeaseInfo, role: int) -> Any:
        if role == Qt.ItemDataRole.BackgroundRole and item.stuck:
            return STUCK_BRUSH
        return None
