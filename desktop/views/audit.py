"""`AuditView`: the read-only audit log of one connection, filterable, with the full before/after of the
selected entry below and export of what is shown as CSV or JSON."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from embedded_service.model import AuditEntry

from ..models.audit import AuditFilter, AuditModel, to_csv, to_json
from ..models.formats import format_when
from .keeping_table import KeepingTable

KINDS = (
    ("All actions", ""),
    ("Queues", "queue"),
    ("Jobs", "job"),
    ("Leases", "lease"),
    ("Waiters", "waiter"),
    ("Tokens", "token"),
)


class AuditView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = AuditModel()
        self.filter = AuditFilter(self.model, self)
        self.table = KeepingTable()
        self.table.setModel(self.filter)
        self.table.setEditTriggers(KeepingTable.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)

        self.actor_filter = QComboBox()
        self.actor_filter.addItem("Everyone", "")
        self.kind_filter = QComboBox()
        for label, kind in KINDS:
            self.kind_filter.addItem(label, kind)
        self.text_filter = QLineEdit()
        self.text_filter.setPlaceholderText("Search target, action, change")
        self.text_filter.setClearButtonEnabled(True)
        for signal in (self.actor_filter.currentIndexChanged, self.kind_filter.currentIndexChanged):
            signal.connect(self._apply_filter)
        self.text_filter.textChanged.connect(self._apply_filter)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the entries shown as CSV or JSON")
        self.export_button.clicked.connect(self._export)
        bar = QHBoxLayout()
        bar.addWidget(self.actor_filter)
        bar.addWidget(self.kind_filter)
        bar.addWidget(self.text_filter, 1)
        bar.addWidget(self.export_button)

        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.details.setPlaceholderText("Select an entry to see everything it recorded, before and after.")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.details)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(splitter)
        self.table.selectionModel().selectionChanged.connect(self._show_selected)
        self.table.selection_lost.connect(self._show_selected)

    def add_entries(self, entries: list[AuditEntry]) -> None:
        self.model.add(entries)
        actors = sorted({e.actor for e in self.model.entries()})
        known = [self.actor_filter.itemData(i) for i in range(1, self.actor_filter.count())]
        if actors != known:
            current = self.actor_filter.currentData()
            self.actor_filter.blockSignals(True)
            self.actor_filter.clear()
            self.actor_filter.addItem("Everyone", "")
            for actor in actors:
                self.actor_filter.addItem(actor, actor)
            self.actor_filter.setCurrentIndex(max(0, self.actor_filter.findData(current)))
            self.actor_filter.blockSignals(False)
        self._show_selected()

    def selected_entry(self) -> AuditEntry | None:
        ids = self.table.selected_ids()
        return next((e for e in self.model.entries() if str(e.id) == ids[0]), None) if ids else None

    def _apply_filter(self) -> None:
        self.filter.set_criteria(self.actor_filter.currentData(), self.kind_filter.currentData(), self.text_filter.text())

    def _show_selected(self) -> None:
        e = self.selected_entry()
        if e is None:
            self.details.clear()
            return
        text = (
            f"{format_when(e.at)}  {e.actor}  {e.action}  {e.target}\n\n"
            f"before:\n{json.dumps(e.before, indent=2, default=str)}\n\nafter:\n{json.dumps(e.after, indent=2, default=str)}"
        )
        if text != self.details.toPlainText():
            self.details.setPlainText(text)

    def export_text(self, fmt: str) -> str:
        """The shown entries as "csv" or "json" text."""
        rows = self.filter.shown()
        return to_csv(rows) if fmt == "csv" else to_json(rows)

    def _export(self) -> None:
        path, chosen = QFileDialog.getSaveFileName(self, "Export audit", "audit.csv", "CSV (*.csv);;JSON (*.json)")
        if path:
            fmt = "json" if path.endswith(".json") or "JSON" in chosen else "csv"
            Path(path).write_text(self.export_text(fmt), encoding="utf-8")
