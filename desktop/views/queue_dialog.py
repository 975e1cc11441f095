"""`QueueDialog`: create a queue or edit every field of one, marking operator-set values.

Fields: limit, paused, max_waiting, timeout_s, stuck_after_s, rate, burst,
per_gpu and (where the server has it) placement. Optional fields have a "none"
box; placement is offered where the server has it (an edited queue carries it; a new one only when this
client's `QueueConfig` knows the field, so an older server is not sent a field it refuses). A field an
operator set at run time (the server's `overrides`, where
offered) is labelled with who set it and when, and can be ticked back to its
configured value. `changes()` gives only the fields the operator changed;
`resets()` the fields to reset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from embedded_service.model import QUEUE_NAME_PATTERN, QueueConfig

from ..models.formats import format_when

OPTIONAL = ("max_waiting", "rate", "stuck_after_s", "per_gpu")
LABELS = {
    "limit": "Limit (slots)",
    "paused": "Paused",
    "max_waiting": "Max waiting",
    "timeout_s": "Acquire timeout",
    "stuck_after_s": "Stuck after",
    "rate": "Rate (admissions/s)",
    "burst": "Burst",
    "per_gpu": "Per-GPU cap",
    "placement": "GPU placement",
}
PLACEMENTS = ("spread", "pack")


def _spin(low: int, high: int, suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setSuffix(suffix)
    return box


def _dspin(low: float, high: float, suffix: str, decimals: int = 1) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(decimals)
    box.setSuffix(suffix)
    return box


class QueueDialog(QDialog):
    """`QueueDialog(config)` edits a queue (`config`: a GET /v1/queues item); `QueueDialog(None, names)` creates."""

    def __init__(self, config: dict[str, Any] | None, existing: Iterable[str] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._creating = config is None
        self._existing = set(existing)
        self._initial: dict[str, Any] = dict(config or {"limit": 1, "paused": False, "timeout_s": 300.0, "burst": 1})
        overrides = self._initial.pop("overrides", None) or {}
        configured = self._initial.pop("configured", None) or {}
        self.setWindowTitle("New queue" if self._creating else f"Queue {self._initial.get('name', '')}")
        self.setMinimumWidth(520)
        self.name = QLineEdit(str(self._initial.get("name", "")))
        self.name.setPlaceholderText("letters, digits, _ . - (e.g. gpu-a100)")
        self.name.setReadOnly(not self._creating)
        self.editors: dict[str, QWidget] = {
            "limit": _spin(0, 1_000_000),
            "paused": QCheckBox("admit nobody until resumed"),
            "max_waiting": _spin(0, 10_000_000),
            "timeout_s": _dspin(0.1, 86_400, " s"),
            "stuck_after_s": _dspin(0.1, 30 * 86_400, " s"),
            "rate": _dspin(0.001, 1_000_000, " /s", 3),
            "burst": _spin(1, 1_000_000),
            "per_gpu": _spin(1, 10_000),
        }
        if "placement" in self._initial or (self._creating and "placement" in QueueConfig.model_fields):
            combo = QComboBox()
            combo.addItems(PLACEMENTS)
            combo.setToolTip("spread: least-loaded GPU first; pack: fill one GPU before the next")
            self.editors["placement"] = combo
        self.unset: dict[str, QCheckBox] = {f: QCheckBox("none") for f in OPTIONAL}
        self.reset_boxes: dict[str, QCheckBox] = {}
        form = QFormLayout()
        form.addRow("Name", self.name)
        for field, editor in self.editors.items():
            row = QHBoxLayout()
            row.addWidget(editor, 1)
            if field in self.unset:
                box = self.unset[field]
                box.toggled.connect(editor.setDisabled)
                row.addWidget(box)
            label = LABELS[field]
            if field in overrides:
                who = overrides[field] or {}
                label += " ✎"
                reset = QCheckBox(f"reset to configured ({configured.get(field, 'default')})")
                reset.setToolTip(f"set by {who.get('by', '?')} {format_when(who.get('at'))}" if who.get("at") else "")
                self.reset_boxes[field] = reset
                row.addWidget(reset)
                editor.setToolTip(f"Operator-set by {who.get('by', '?')}; configured value {configured.get(field)}")
            form.addRow(label, row)
        self._load()
        self.error = QLabel()
        self.error.setStyleSheet("color: #cf222e")
        self.error.setWordWrap(True)
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def _load(self) -> None:
        for field, editor in self.editors.items():
            value = self._initial.get(field)
            if field in self.unset:
                self.unset[field].setChecked(value is None)
                editor.setDisabled(value is None)
            if value is None:
                continue
            if isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QComboBox):
                editor.setCurrentText(str(value))
            elif isinstance(editor, QSpinBox):
                editor.setValue(int(value))
            elif isinstance(editor, QDoubleSpinBox):
                editor.setValue(float(value))

    def values(self) -> dict[str, Any]:
        """Every field as the dialog shows it (None for a field set to none)."""
        out: dict[str, Any] = {}
        for field, editor in self.editors.items():
            if field in self.unset and self.unset[field].isChecked():
                out[field] = None
            elif isinstance(editor, QCheckBox):
                out[field] = editor.isChecked()
            elif isinstance(editor, QComboBox):
                out[field] = editor.currentText()
            elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
                out[field] = editor.value()
        return out

    def queue_name(self) -> str:
        return self.name.text().strip()

    def changes(self) -> dict[str, Any]:
        """Fields whose value differs from the queue's (all of them when creating); reset fields excluded."""
        values = self.values()
        if self._creating:
            return {k: v for k, v in values.items() if v is not None}
        resets = set(self.resets())
        return {k: v for k, v in values.items() if k not in resets and v != self._initial.get(k)}

    def resets(self) -> list[str]:
        return [field for field, box in self.reset_boxes.items() if box.isChecked()]

    def problem(self) -> str:
        """Why OK cannot be taken ("" when it can)."""
        name = self.queue_name()
        if self._creating:
            if not re.fullmatch(QUEUE_NAME_PATTERN, name):
                return "Name: use letters, digits, '_', '.' or '-' (up to 64, starting with a letter or digit)."
            if name in self._existing:
                return f"A queue named {name} exists already: edit it instead."
        return ""

    def accept(self) -> None:
        problem = self.problem()
        if problem:
            self.error.setText(problem)
            self.error.show()
            return
        super().accept()
