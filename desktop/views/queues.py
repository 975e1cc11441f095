"""`QueuesView`: the queues table with the limit editable in place, pause/resume and mark resets.

Risky changes ask first: a limit of 0, a limit below the slots in use (running
work is not preempted, so the queue stays over its limit for a while), pausing
a queue that has waiters, and resetting high-water marks (the record is lost).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QSpinBox,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from embedded_service.model import QueueStats, Snapshot

from ..models.queues import LIMIT_COLUMN, QueuesModel
from ..roles import Act, allows, gate
from . import confirm
from .keeping_table import KeepingTable
from .queue_dialog import QueueDialog

Index = QModelIndex | QPersistentModelIndex


def limit_risk(q: QueueStats, limit: int) -> str | None:
    """Why setting `limit` on `q` deserves a second look, or None."""
    if limit == 0:
        return f"A limit of 0 admits nobody to {q.config.name}: {q.waiting} waiting will keep waiting."
    if limit < q.in_use:
        return (
            f"{q.config.name} has {q.in_use} slots in use. Running work is not stopped: "
            f"new work waits until fewer than {limit} are in use."
        )
    return None


class LimitDelegate(QStyledItemDelegate):
    """A spin box for the limit cell (whole numbers, 0 to 1,000,000)."""

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem, index: Index) -> QWidget:
        editor = QSpinBox(parent)
        editor.setRange(0, 1_000_000)
        editor.setFrame(False)
        return editor


class QueuesView(QWidget):
    limit_requested = Signal(str, int)
    pause_requested = Signal(str)
    resume_requested = Signal(str)
    reset_marks_requested = Signal(str)
    create_requested = Signal(str, object)  # name, dict of fields
    update_requested = Signal(str, object)  # name, dict of changed fields
    reset_fields_requested = Signal(str, object)  # name, list of fields back to configured
    delete_requested = Signal(str, bool)  # name, force (it has waiters or holders)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = QueuesModel()
        self.model.limit_edited.connect(self._on_limit_edited)
        self.table = KeepingTable()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(LIMIT_COLUMN, LimitDelegate(self.table))
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.SelectedClicked
        )
        self.table.verticalHeader().setVisible(False)
        # Sized when the set of queues changes, not on every snapshot (ResizeToContents measured every cell
        # at each snapshot: 6% of the dashboard's CPU at ten servers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.model.modelReset.connect(self.table.resizeColumnsToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAlternatingRowColors(True)

        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.reset_button = QPushButton("Reset peaks")
        self.add_button = QPushButton("New queue…")
        self.edit_button = QPushButton("Edit…")
        self.delete_button = QPushButton("Delete…")
        self.add_button.clicked.connect(self._add)
        self.edit_button.clicked.connect(self._edit)
        self.delete_button.clicked.connect(self._delete)
        self.table.doubleClicked.connect(self._double_clicked)
        self.pause_button.setToolTip("Stop admitting; running work continues and waiters keep their place")
        self.reset_button.setToolTip("Forget the high-water marks of the selected queue")
        self.pause_button.clicked.connect(self._pause)
        self.resume_button.clicked.connect(self._resume)
        self.reset_button.clicked.connect(self._reset_marks)
        buttons = QHBoxLayout()
        for b in (self.pause_button, self.resume_button, self.reset_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        for b in (self.add_button, self.edit_button, self.delete_button):
            buttons.addWidget(b)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.table)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.model.modelReset.connect(self._update_buttons)
        self.table.selection_lost.connect(self._update_buttons)
        self.model.dataChanged.connect(self._update_buttons)
        self._read_only = False
        self._role = ""
        self._details: dict[str, dict[str, Any]] = {}
        self._shape: tuple[object, ...] = ()
        self._update_buttons()

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.model.apply_snapshot(snap)  # the table keeps the selected queue by name, or drops it if it left
        shape = tuple((q.config.name, q.config.paused, q.config.limit, q.config.max_waiting) for q in snap.queues)
        if shape != self._shape:  # what sets the columns' widths changed (a pause, a limit): size them again
            self._shape = shape
            self.table.resizeColumnsToContents()

    def set_read_only(self, read_only: bool) -> None:
        self._read_only = read_only
        self.model.editable = not read_only and allows(self._role, Act.edit_queue)
        self._update_buttons()

    def set_role(self, role: str) -> None:
        """The connection's token role: queue changes need an operator."""
        self._role = role
        self.set_read_only(self._read_only)

    def apply_details(self, items: list[dict[str, Any]]) -> None:
        """GET /v1/queues items: operator-set fields (`overrides`) are marked in the table and the editor."""
        self._details = {str(item.get("name")): item for item in items if isinstance(item, dict)}
        self.model.set_overrides({name: dict(item.get("overrides") or {}) for name, item in self._details.items()})
        self.table.resizeColumnsToContents()

    def select_queue(self, name: str) -> None:
        if name in self.model.names():
            self.table.selectRow(self.model.names().index(name))

    def selected_queue(self) -> str | None:
        stats = self._selected_stats()
        return stats.config.name if stats else None

    def _selected_stats(self) -> QueueStats | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.queue(rows[0].row()) if rows else None

    def _update_buttons(self, *_: object) -> None:
        q = self._selected_stats()
        can_act = q is not None and not self._read_only
        role, edit = self._role, Act.edit_queue
        gate(self.pause_button, edit, role, can_act and q is not None and not q.config.paused,
             "Stop admitting; running work continues and waiters keep their place")
        gate(self.resume_button, edit, role, can_act and q is not None and q.config.paused, "Admit again")
        gate(self.reset_button, edit, role, can_act, "Forget the high-water marks of the selected queue")
        gate(self.add_button, edit, role, not self._read_only, "Create a queue")
        gate(self.edit_button, edit, role, can_act, "Edit every setting of the selected queue")
        gate(self.delete_button, edit, role, can_act, "Delete the selected queue")

    def _on_limit_edited(self, name: str, limit: int) -> None:
        stats = self.model.stats(name)
        risk = limit_risk(stats, limit) if stats else None
        if risk and not confirm.confirm(self, f"Change the limit of {name}?", risk):
            return
        self.limit_requested.emit(name, limit)

    def _config_of(self, q: QueueStats) -> dict[str, Any]:
        details = self._details.get(q.config.name)
        base = q.config.model_dump(mode="json")
        if details:
            base.update(details)
        return base

    def _add(self) -> None:
        dialog = QueueDialog(None, self.model.names(), self)
        if dialog.exec():
            self.create_requested.emit(dialog.queue_name(), dialog.changes())

    def _double_clicked(self, index: QModelIndex) -> None:
        if index.column() != LIMIT_COLUMN:  # the limit column edits in place
            self._edit()

    def _edit(self) -> None:
        q = self._selected_stats()
        if q is None or self._read_only or not allows(self._role, Act.edit_queue):
            return
        dialog = QueueDialog(self._config_of(q), self.model.names(), self)
        if not dialog.exec():
            return
        changes, resets = dialog.changes(), dialog.resets()
        if "limit" in changes:
            risk = limit_risk(q, int(changes["limit"]))
            if risk and not confirm.confirm(self, f"Change the limit of {q.config.name}?", risk):
                return
        if changes:
            self.update_requested.emit(q.config.name, changes)
        if resets:
            self.reset_fields_requested.emit(q.config.name, resets)

    def _delete(self) -> None:
        q = self._selected_stats()
        if q is None:
            return
        busy = q.in_use or q.waiting
        effect = (
            f"{q.in_use} holding and {q.waiting} waiting: waiters fail at once, holders keep running until they release."
            if busy
            else "Nobody is holding or waiting."
        )
        if confirm.confirm(self, f"Delete queue {q.config.name}?", f"{effect}\n\nIts settings and peaks are lost."):
            self.delete_requested.emit(q.config.name, bool(busy))

    def _pause(self) -> None:
        q = self._selected_stats()
        if q is None:
            return
        if q.waiting and not confirm.confirm(
            self, f"Pause {q.config.name}?", f"{q.waiting} waiting will not be admitted until you resume it."
        ):
            return
        self.pause_requested.emit(q.config.name)

    def _resume(self) -> None:
        q = self._selected_stats()
        if q is not None:
            self.resume_requested.emit(q.config.name)

    def _reset_marks(self) -> None:
        q = self._selected_stats()
        if q is not None and confirm.confirm(
            self,
            f"Reset the peaks of {q.config.name}?",
            f"The recorded peaks (in use {q.marks.in_use}, waiting {q.marks.waiting}) will be forgotten.",
        ):
            self.reset_marks_requested.emit(q.config.name)
