"""`WorkView`: who is waiting for a slot and who holds one, with cancel and force-release.

Both tables are refreshed from snapshots by id, so the row an operator picked
stays picked while figures move. The actions ask first (see `confirm`) and then
only emit a signal carrying the waiter's or lease's id.
"""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from embedded_service.model import LeaseInfo, Snapshot, WaiterInfo

from ..models.work import SORT_ROLE, LeasesModel, WaitersModel
from ..roles import Act, gate
from . import confirm
from .keeping_table import KeepingTable

REPAINT_MS = 1000  # ages and time left move on between snapshots


def _table(model: WaitersModel | LeasesModel, parent: QWidget) -> tuple[KeepingTable, QSortFilterProxyModel]:
    proxy = QSortFilterProxyModel(parent)
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    proxy.setDynamicSortFilter(True)
    table = KeepingTable()
    table.setModel(proxy)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSortingEnabled(True)
    table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
    table.setAlternatingRowColors(True)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    table.horizontalHeader().setStretchLastSection(True)
    return table, proxy


def _selected_row(table: QTableView, proxy: QSortFilterProxyModel) -> int | None:
    rows = table.selectionModel().selectedRows()
    return proxy.mapToSource(rows[0]).row() if rows else None


def _holder(owner: str | None) -> str:
    return owner or "an unnamed client"


class WorkView(QWidget):
    """Waiters above leases; Cancel waiter and Force-release lease act on the selected row."""

    cancel_waiter_requested = Signal(str)  # waiter id
    revoke_requested = Signal(str)  # lease id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.waiters = WaitersModel(parent=self)
        self.leases = LeasesModel(parent=self)
        self.waiters_table, self._waiters_proxy = _table(self.waiters, self)
        self.leases_table, self._leases_proxy = _table(self.leases, self)
        self._read_only = False
        self._role = ""

        self.cancel_button = QPushButton("Cancel waiter")
        self.cancel_button.clicked.connect(self._cancel_waiter)
        self.revoke_button = QPushButton("Force-release lease")
        self.revoke_button.clicked.connect(self._revoke)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self._group("Waiting", self.waiters_table, self.cancel_button))
        splitter.addWidget(self._group("Holding a slot", self.leases_table, self.revoke_button))
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        for table in (self.waiters_table, self.leases_table):
            table.selectionModel().selectionChanged.connect(self._update_buttons)
            table.model().rowsRemoved.connect(self._update_buttons)
            table.model().modelReset.connect(self._update_buttons)
            table.selection_lost.connect(self._update_buttons)
        self._repaint = QTimer(self)
        self._repaint.setInterval(REPAINT_MS)
        self._repaint.timeout.connect(self.waiters_table.viewport().update)
        self._repaint.timeout.connect(self.leases_table.viewport().update)
        self._repaint.start()
        self._update_buttons()

    @staticmethod
    def _group(title: str, table: QTableView, button: QPushButton) -> QGroupBox:
        box = QGroupBox(title)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(button)
        layout = QVBoxLayout(box)
        layout.addWidget(table)
        layout.addLayout(buttons)
        return box

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Show the snapshot's waiters and leases."""
        self.waiters.apply_snapshot(snap)
        self.leases.apply_snapshot(snap)
        self._update_buttons()

    def set_read_only(self, read_only: bool) -> None:
        """Disable the actions (a viewer token, or data too old to act on)."""
        self._read_only = read_only
        self._update_buttons()

    def set_role(self, role: str) -> None:
        """The connection's token role: actions it may not do are disabled with a tooltip saying why."""
        self._role = role
        self._update_buttons()

    def selected_waiter(self) -> WaiterInfo | None:
        row = _selected_row(self.waiters_table, self._waiters_proxy)
        return None if row is None else self.waiters.waiter(row)

    def selected_lease(self) -> LeaseInfo | None:
        row = _selected_row(self.leases_table, self._leases_proxy)
        return None if row is None else self.leases.lease(row)

    def _update_buttons(self) -> None:
        gate(self.cancel_button, Act.cancel_waiter, self._role, not self._read_only and self.selected_waiter() is not None)
        gate(self.revoke_button, Act.revoke, self._role, not self._read_only and self.selected_lease() is not None)

    def _cancel_waiter(self) -> None:
        waiter = self.selected_waiter()
        if waiter is None or self._read_only:
            return
        text = (
            f"Cancel the request of {_holder(waiter.owner)} waiting in {waiter.queue} (position {waiter.position})?\n\n"
            "It leaves the line at once and its acquire fails as cancelled."
        )
        if confirm.confirm(self, "Cancel waiter", text):
            self.cancel_waiter_requested.emit(waiter.id)

    def _revoke(self) -> None:
        lease = self.selected_lease()
        if lease is None or self._read_only:
            return
        holder = f"job {lease.job_id}" if lease.job_id else _holder(lease.owner)
        effect = (
            f"Job {lease.job_id} is stopped as if cancelled."
            if lease.job_id
            else "The holder's task is cancelled: a local task at once, a remote client at its next heartbeat."
        )
        text = (
            f"Force-release the slot of {holder} in {lease.queue} (fence {lease.fence})?\n\n"
            f"The slot is given back now and the next waiter may be admitted. {effect}"
        )
        if confirm.confirm(self, "Force-release lease", text):
            self.revoke_requested.emit(lease.id)
