"""`QueuesModel`: one row per queue of the latest snapshot; the limit column is editable in place.

Editing a limit does not change anything by itself: it emits `limit_edited`
so that the view can confirm a risky change and the connection can send it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor

from embedded_service.model import QueueStats, Snapshot

from .formats import format_wait, format_when
from .table import ID_ROLE, HeaderedTable, Index

COLUMNS = ("Queue", "Limit", "State", "In use", "Waiting", "Peak in use", "Peak waiting", "Est. wait", "Stuck", "Granted")
LIMIT_COLUMN = 1
PAUSED_BRUSH = QBrush(QColor(212, 167, 44, 60))
"""Translucent yellow for a paused queue's row, readable under both themes."""


class QueuesModel(HeaderedTable):
    headers = COLUMNS
    limit_edited = Signal(str, int)  # queue, new limit

    def __init__(self) -> None:
        super().__init__()  # rows: QueueStats, by name
        self.editable = True
        self._overrides: dict[str, dict[str, Any]] = {}

    def set_overrides(self, overrides: dict[str, dict[str, Any]]) -> None:
        """Per queue, the operator-set fields: `{field: {"value", "by", "at"}}` (from GET /v1/queues)."""
        if overrides != self._overrides:
            self._overrides = overrides
            if self._rows:
                self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, len(COLUMNS) - 1))

    def apply_snapshot(self, snap: Snapshot) -> None:
        rows = sorted(snap.queues, key=lambda q: q.config.name)
        if [q.config.name for q in rows] != [q.config.name for q in self._rows]:
            self.beginResetModel()
            self._rows = rows
            self.endResetModel()
            return
        limits_changed = any(new.config.limit != old.config.limit for new, old in zip(rows, self._rows, strict=True))
        self._rows = rows
        if not rows:
            return
        last_row, last_column = len(rows) - 1, len(COLUMNS) - 1
        if limits_changed:
            self.dataChanged.emit(self.index(0, 0), self.index(last_row, last_column))
        else:  # leave the limit cell alone: an operator may be typing a new limit into it
            self.dataChanged.emit(self.index(0, 0), self.index(last_row, LIMIT_COLUMN - 1))
            self.dataChanged.emit(self.index(0, LIMIT_COLUMN + 1), self.index(last_row, last_column))

    def queue(self, row: int) -> QueueStats:
        return self._rows[row]

    def stats(self, name: str) -> QueueStats | None:
        return next((q for q in self._rows if q.config.name == name), None)

    def names(self) -> list[str]:
        return [q.config.name for q in self._rows]

    def flags(self, index: Index) -> Qt.ItemFlag:
        flags = super().flags(index)
        if index.column() == LIMIT_COLUMN and self.editable:
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        q = self._rows[index.row()]
        col = index.column()
        if role == ID_ROLE:
            return q.config.name
        if role == Qt.ItemDataRole.EditRole and col == LIMIT_COLUMN:
            return q.config.limit
        set_by = self._overrides.get(q.config.name, {})
        if role == Qt.ItemDataRole.DisplayRole:
            text = self._display(q, col)
            if (col == LIMIT_COLUMN and "limit" in set_by) or (col == 2 and "paused" in set_by):
                text += " ✎"
            if col == 0 and set_by:
                text += " ✎"
            return text
        if role == Qt.ItemDataRole.ToolTipRole and col in (5, 6):
            return self._mark_tooltip(q, col)
        if role == Qt.ItemDataRole.ToolTipRole and set_by:
            return "Set by an operator (not the configuration): " + ", ".join(
                f"{field} by {(who or {}).get('by', '?')} {format_when((who or {}).get('at'))}"
                for field, who in set_by.items()
            )
        if role == Qt.ItemDataRole.BackgroundRole and q.config.paused:
            return PAUSED_BRUSH
        if role == Qt.ItemDataRole.TextAlignmentRole and col > 0 and col != 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and col == 2 and q.config.paused:
            return Qt.GlobalColor.darkYellow
        if role == Qt.ItemDataRole.ForegroundRole and col == 8 and q.stuck:
            return Qt.GlobalColor.red
        return None

    @staticmethod
    def _display(q: QueueStats, col: int) -> str:
        match col:
            case 0:
                return q.config.name
            case 1:
                return str(q.config.limit)
            case 2:
                return "PAUSED" if q.config.paused else "running"
            case 3:
                return f"{q.in_use} / {q.config.limit}"
            case 4:
                return str(q.waiting) if q.config.max_waiting is None else f"{q.waiting} / {q.config.max_waiting}"
            case 5:
                return str(q.marks.in_use)
            case 6:
                return str(q.marks.waiting)
            case 7:
                return format_wait(q.est_wait_s)
            case 8:
                return str(q.stuck)
            case _:
                return str(q.totals.granted)

    @staticmethod
    def _mark_tooltip(q: QueueStats, col: int) -> str:
        at = q.marks.in_use_at if col == 5 else q.marks.waiting_at
        return "reached " + format_when(at) if at else "not reached yet"

    def setData(self, index: Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or index.column() != LIMIT_COLUMN or not self.editable:
            return False
        try:
            limit = int(value)
        except (TypeError, ValueError):
            return False
        if limit < 0:
            return False
        name = self._rows[index.row()].config.name
        if limit != self._rows[index.row()].config.limit:
            self.limit_edited.emit(name, limit)
        return False  # the snapshot that follows the change shows the new limit
