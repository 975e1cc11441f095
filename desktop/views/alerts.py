"""`AlertHistoryDialog`: every alert the dashboard raised this run, newest first (also where no tray exists)."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ..models.formats import format_when
from ..notify import Notifier


class AlertHistoryDialog(QDialog):
    def __init__(self, notifier: Notifier, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Alert history")
        self.resize(760, 420)
        self.notifier = notifier
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(("When", "Server", "Alert", "Details"))
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        notifier.notified.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: object) -> None:
        alerts = list(reversed(self.notifier.history))
        self.table.setRowCount(len(alerts))
        for row, alert in enumerate(alerts):
            for col, text in enumerate((format_when(alert.at), alert.server, alert.title, alert.text)):
                self.table.setItem(row, col, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
