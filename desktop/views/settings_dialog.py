"""`SettingsDialog`: alert threshold, theme and refresh, kept in `AppSettings` (no config file to edit)."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

from ..settings import AppSettings
from ..theme import THEMES


class SettingsDialog(QDialog):
    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        self.initial_theme = settings.theme()
        self.waiting_alert = QSpinBox()
        self.waiting_alert.setRange(1, 1_000_000)
        self.waiting_alert.setValue(settings.waiting_alert())
        self.waiting_alert.setToolTip("Notify when more than this many wait in one queue")
        self.theme = QComboBox()
        self.theme.addItems(list(THEMES))
        self.theme.setCurrentText(self.initial_theme)
        self.stale_after = QDoubleSpinBox()
        self.stale_after.setRange(2, 300)
        self.stale_after.setDecimals(0)
        self.stale_after.setSuffix(" s")
        self.stale_after.setValue(settings.stale_after_s())
        self.stale_after.setToolTip("Mark a server's figures stale (and block actions) after this long without news")
        self.redraws = QSpinBox()
        self.redraws.setRange(1, 10)
        self.redraws.setSuffix(" per second")
        self.redraws.setValue(settings.redraws_per_s())
        self.redraws.setToolTip("Most graph redraws per second: fewer saves CPU")
        form = QFormLayout(self)
        form.addRow("Alert when waiting exceeds", self.waiting_alert)
        form.addRow("Theme", self.theme)
        form.addRow("Stale after", self.stale_after)
        form.addRow("Graph refresh, at most", self.redraws)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def save(self) -> None:
        """Write the dialog's values to the settings."""
        self.settings.set_waiting_alert(self.waiting_alert.value())
        self.settings.set_theme(self.theme.currentText())
        self.settings.set_stale_after_s(self.stale_after.value())
        self.settings.set_redraws_per_s(self.redraws.value())
