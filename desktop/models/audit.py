"""`AuditModel`: operator actions (who, what, before -> after), newest first."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt

from embedded_service.model import AuditEntry

from .formats import format_when
from .table import ID_ROLE, HeaderedTable, Index

COLUMNS = ("When", "Who", "Action", "Target", "Before", "After")
MAX_ROWS = 10_000


def _compact(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "), default=str)


class AuditModel(HeaderedTable):
    headers = COLUMNS

    def __init__(self) -> None:
        super().__init__()  # rows: AuditEntry, newest first
        self._ids: set[int] = set()

    def add(self, entries: list[AuditEntry]) -> None:
        """Add entries (any order; ones already shown, e.g. replayed after a reconnect, are skipped)."""
        fresh = sorted((e for e in entries if e.id not in self._ids), key=lambda e: (e.at, e.id), reverse=True)
        if not fresh:
            return
        self.beginResetModel()
        self._rows = sorted(fresh + self._rows, key=lambda e: (e.at, e.id), reverse=True)[:MAX_ROWS]
        self._ids = {e.id for e in self._rows}
        self.endResetModel()

    def entry(self, row: int) -> AuditEntry:
        return self._rows[row]

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if index.isValid() and role == ID_ROLE:
            return str(self._rows[index.row()].id)
        if not index.isValid() or role not in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return None
        e = self._rows[index.row()]
        return (
            format_when(e.at),
            e.actor,
            e.action,
            e.target,
            _compact(e.before),
            _compact(e.after),
        )[index.column()]
