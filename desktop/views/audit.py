"""`AuditView`: the read-only audit log of one connection."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QVBoxLayout, QWidget

from embedded_service.model import AuditEntry

from ..models.audit import AuditModel
from .keeping_table import KeepingTable


class AuditView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = AuditModel()
        self.table = KeepingTable()
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAlternatingRowColors(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)

    def add_entries(self, entries: list[AuditEntry]) -> None:
        self.model.add(entries)
