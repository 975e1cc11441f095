"""`AuditModel`: operator actions, newest first, one readable line each: when (local time), who, action,
target and a summary of what changed ("limit 1 -> 4"); the full before/after stays on the entry.
`AuditFilter` narrows by actor, action kind and free text."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import QSortFilterProxyModel, Qt

from embedded_service.model import AuditEntry

from .audit_summary import summarize
from .formats import format_when
from .table import ID_ROLE, HeaderedTable, Index

COLUMNS = ("When", "Who", "Action", "Target", "What changed")
MAX_ROWS = 10_000


def _compact(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "), default=str)


class AuditModel(HeaderedTable):
    headers = COLUMNS

    def __init__(self) -> None:
        super().__init__()  # rows: (AuditEntry, summary), newest first
        self._ids: set[int] = set()

    def add(self, entries: list[AuditEntry]) -> None:
        """Add entries (any order; ones already shown, e.g. replayed after a reconnect, are skipped)."""
        fresh = [(e, summarize(e)) for e in entries if e.id not in self._ids]
        if not fresh:
            return
        self.beginResetModel()
        self._rows = sorted(fresh + self._rows, key=lambda r: (r[0].at, r[0].id), reverse=True)[:MAX_ROWS]
        self._ids = {r[0].id for r in self._rows}
        self.endResetModel()

    def entry(self, row: int) -> AuditEntry:
        return self._rows[row][0]

    def summary(self, row: int) -> str:
        return self._rows[row][1]

    def entries(self) -> list[AuditEntry]:
        return [r[0] for r in self._rows]

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        e, summary = self._rows[index.row()]
        if role == ID_ROLE:
            return str(e.id)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"before: {_compact(e.before) or '—'}\nafter: {_compact(e.after) or '—'}"
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        return (format_when(e.at), e.actor, e.action, e.target, summary)[index.column()]


class AuditFilter(QSortFilterProxyModel):
    """Shows entries matching an actor ("" all), an action prefix ("queue", "job", ...; "" all) and free text."""

    def __init__(self, source: AuditModel, parent: Any = None) -> None:
        super().__init__(parent)
        self._source = source
        self.actor = ""
        self.kind = ""
        self.text = ""
        self.setSourceModel(source)

    def set_criteria(self, actor: str = "", kind: str = "", text: str = "") -> None:
        self.actor, self.kind, self.text = actor, kind, text.strip().lower()
        self.invalidate()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        e = self._source.entry(source_row)
        if self.actor and e.actor != self.actor:
            return False
        if self.kind and e.action.partition(".")[0] != self.kind:
            return False
        if self.text:
            haystack = f"{e.actor} {e.action} {e.target} {self._source.summary(source_row)}".lower()
            return self.text in haystack
        return True

    def shown(self) -> list[tuple[AuditEntry, str]]:
        """The entries passing the filter, in their shown order, with their summaries."""
        out = []
        for row in range(self.rowCount()):
            source_row = self.mapToSource(self.index(row, 0)).row()
            out.append((self._source.entry(source_row), self._source.summary(source_row)))
        return out


def to_csv(rows: Iterable[tuple[AuditEntry, str]]) -> str:
    """CSV: id, local time, epoch seconds, actor, action, target, summary, before and after as JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "when", "at", "actor", "action", "target", "summary", "before", "after"])
    for e, summary in rows:
        writer.writerow(
            [e.id, format_when(e.at), e.at, e.actor, e.action, e.target, summary, _compact(e.before), _compact(e.after)]
        )
    return buffer.getvalue()


def to_json(rows: Iterable[tuple[AuditEntry, str]]) -> str:
    """A JSON array of the entries as the server gives them, each with its `summary` added."""
    return json.dumps([{**e.model_dump(mode="json"), "summary": s} for e, s in rows], indent=2)
