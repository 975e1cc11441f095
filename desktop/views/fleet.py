"""`FleetView`: one compact row per connection, readable at ten servers: state, how old its figures are,
slots in use over the limits of all its queues, waiting, the highest waiting peak, stuck holders and the
alerts now active. Selecting a row shows that server's pages at full width (`server_chosen`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QVBoxLayout, QWidget

from ..connection import Connection, LinkState
from ..models.cluster import cluster_summary
from ..models.table import ID_ROLE, HeaderedTable, Index
from .keeping_table import KeepingTable

STATE_COLOURS = {
    LinkState.live.value: "#2da44e",
    LinkState.connecting.value: "#d4a72c",
    LinkState.reconnecting.value: "#e16f24",
    LinkState.unauthorized.value: "#cf222e",
    LinkState.failed.value: "#cf222e",
    LinkState.closed.value: "#8c959f",
}
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def fleet_row(conn: Connection, alerts: int) -> tuple[str, ...]:
    """The fleet columns of one connection, as text."""
    snap = conn.last_snapshot
    state = conn.state.value + (f" · {conn.role}" if conn.role else "")
    cluster = cluster_summary(snap)
    name = f"{conn.name} · {cluster}" if cluster else conn.name
    if snap is None:
        return (name, state, conn.freshness(), "", "", "", "", str(alerts) if alerts else "")
    in_use = sum(q.in_use for q in snap.queues)
    limit = sum(q.config.limit for q in snap.queues)
    paused = sum(1 for q in snap.queues if q.config.paused)
    queues = f"{in_use} / {limit} in {len(snap.queues)} queue{'s' if len(snap.queues) != 1 else ''}"
    if paused:
        queues += f" ({paused} paused)"
    waiting = sum(q.waiting for q in snap.queues)
    peak = max((q.marks.waiting for q in snap.queues), default=0)
    stuck = sum(q.stuck for q in snap.queues)
    return (
        name,
        state,
        conn.freshness(),
        queues,
        str(waiting),
        str(peak),
        str(stuck) if stuck else "",
        str(alerts) if alerts else "",
    )


class FleetModel(HeaderedTable):
    headers = ("Server", "State", "Data", "Slots in use", "Waiting", "Peak waiting", "Stuck", "Alerts")
    NUMERIC = frozenset({4, 5, 6, 7})

    def __init__(self, alerts: Callable[[str], int] = lambda name: 0, parent: Any = None) -> None:
        super().__init__(parent)
        self._conns: list[Connection] = []
        self._text: list[tuple[str, ...]] = []
        self._alerts = alerts

    def set_connections(self, conns: list[Connection]) -> None:
        self.beginResetModel()
        self._conns = list(conns)
        self._rows = self._conns
        self._text = [fleet_row(c, self._alerts(c.name)) for c in self._conns]
        self.endResetModel()

    def refresh(self) -> None:
        """Recompute every row's text (ages move on); one change signal for the rows that changed."""
        fresh = [fleet_row(c, self._alerts(c.name)) for c in self._conns]
        changed = [row for row, (old, new) in enumerate(zip(self._text, fresh, strict=True)) if old != new]
        self._text = fresh
        if changed:
            self.dataChanged.emit(self.index(min(changed), 0), self.index(max(changed), len(self.headers) - 1))

    def connection(self, row: int) -> Connection:
        return self._conns[row]

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        conn, text, col = self._conns[index.row()], self._text[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return text[col]
        if role == ID_ROLE:
            return conn.name
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{conn.current_url}\n{conn.detail}"
        if role == Qt.ItemDataRole.TextAlignmentRole and col in self.NUMERIC:
            return _RIGHT
        if role == Qt.ItemDataRole.ForegroundRole and col == 1:
            return QColor(STATE_COLOURS.get(conn.state.value, "#8c959f"))
        if role == Qt.ItemDataRole.ForegroundRole and col in (6, 7) and text[col]:
            return QColor("#cf222e")
        return None


class FleetView(QWidget):
    """The fleet table; `server_chosen(name)` when the operator selects a row."""

    server_chosen = Signal(str)

    def __init__(self, alerts: Callable[[str], int] = lambda name: 0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = FleetModel(alerts, self)
        self.table = KeepingTable()
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.selectionModel().currentRowChanged.connect(self._on_current)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self.model.refresh)
        self._timer.start()

    def set_connections(self, conns: list[Connection], chosen: str | None) -> None:
        self.model.set_connections(conns)
        if chosen is not None:
            self.choose(chosen)
        self._fit_height()

    def choose(self, name: str) -> None:
        self.table.select_ids([name])

    def chosen(self) -> str | None:
        ids = self.table.selected_ids()
        return ids[0] if ids else None

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.server_chosen.emit(str(current.data(ID_ROLE)))

    def _fit_height(self) -> None:
        """Exactly as tall as its rows, up to ten; more scroll."""
        rows = min(max(1, self.model.rowCount()), 10)
        header = self.table.horizontalHeader().sizeHint().height()
        height = header + rows * self.table.verticalHeader().defaultSectionSize() + 2 * self.table.frameWidth()
        self.setFixedHeight(height)
