"""`ClusterView`: a redis-mode deployment at a glance: totals, hosts, instances and GPUs grouped by host.

Stale hosts and instances (no heartbeat within their liveness TTL) are marked in words and with a red wash;
the instance this dashboard reads from is marked "connected". A server that is not a cluster gets one quiet
line saying so. Tables keep the operator's selection by id (`KeepingTable`); the GPU list takes no selection.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QLabel,
    QLayout,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from embedded_service.model import DeviceInfo, Snapshot

from ..models.cluster import (
    STALE_BRUSH,
    HostsModel,
    InstancesModel,
    cluster_totals,
    gpus_by_host,
    host_rows,
    is_cluster,
    totals_text,
)
from .devices import gib, health_text
from .keeping_table import KeepingTable

SINGLE_SERVER = "A single server, not a cluster: it has no other instances or hosts to show."
MAX_SHOWN_ROWS = 8  # a table grows with its rows up to this many, then scrolls
GPU_HEADERS = ("GPU", "Name", "Memory used", "Reserved", "Leases", "Utilisation", "Health")


def _table(model: HostsModel | InstancesModel) -> KeepingTable:
    table = KeepingTable()
    table.setModel(model)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    return table


def _fit_rows(table: KeepingTable) -> None:
    """As tall as its rows (at least one, at most MAX_SHOWN_ROWS): short lists leave room for the GPUs."""
    model = table.model()
    rows = min(max(1, model.rowCount() if model is not None else 0), MAX_SHOWN_ROWS)
    row_h = table.verticalHeader().defaultSectionSize()
    height = table.horizontalHeader().sizeHint().height() + rows * row_h + 2 * table.frameWidth()
    scroll = table.horizontalScrollBar()
    if scroll.isVisible():
        height += scroll.sizeHint().height()
    table.setFixedHeight(height)


def gpu_columns(d: DeviceInfo) -> list[str]:
    """One GPU's cells in the by-host list: index, name, memory used (of its total), memory promised to leases,
    how many leases are placed on it, utilisation and health ("unknown" / "—" for figures not read, e.g. a GPU
    declared in the configuration on a host without NVML)."""
    if d.memory_total_mib is None:
        used = "unknown" if d.memory_used_mib is None else gib(d.memory_used_mib)
    else:
        figure = "unknown" if d.memory_used_mib is None else f"{d.memory_used_mib / 1024:.1f}"
        used = f"{figure} of {gib(d.memory_total_mib)}"
    util = "—" if d.utilization_pct is None else f"{d.utilization_pct:.0f} %"
    leases = str(len(d.leases)) if d.leases else ""
    return [f"GPU {d.index}", d.name, used, gib(d.memory_reserved_mib), leases, util, health_text(d) or "ok"]


class ClusterView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.single = QLabel("Waiting for the first figures from the service…")
        self.single.setObjectName("clusterSingle")
        self.single.setWordWrap(True)
        self.totals = QLabel("")
        self.totals.setObjectName("clusterTotals")
        self.totals.setWordWrap(True)
        self.totals.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.totals.font()
        font.setBold(True)
        self.totals.setFont(font)
        self.on = QLabel("")
        self.on.setWordWrap(True)

        self.hosts_model = HostsModel(self)
        self.hosts_table = _table(self.hosts_model)
        self.instances_model = InstancesModel(self)
        self.instances_table = _table(self.instances_model)
        self.gpus = QTreeWidget()
        self.gpus.setColumnCount(len(GPU_HEADERS))
        self.gpus.setHeaderLabels(list(GPU_HEADERS))
        self.gpus.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.gpus.setRootIsDecorated(True)
        self.gpus.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.gpus.header().setStretchLastSection(True)
        self.gpus.setUniformRowHeights(True)
        self.gpus.setStyleSheet("QTreeView::item { padding: 3px 2px; }")  # rows as tall as the tables' above
        self._gpu_rows: list[tuple[str, bool, list[list[str]]]] = []
        self._last_published: dict[str, list[list[str]]] = {}  # host -> its GPUs' cells when it last listed them
        self.no_gpus = QLabel("No GPUs published by any host.")

        self.hosts_box = self._box("Hosts", self.hosts_table)
        self.instances_box = self._box("Instances", self.instances_table)
        self.gpus_box = self._box("GPUs by host", self.no_gpus, self.gpus)
        box_layout = self.gpus_box.layout()
        if box_layout is not None:  # the box is no taller than its list (`_fit_gpus`), not an empty frame
            box_layout.setSizeConstraint(QLayout.SizeConstraint.SetMinAndMaxSize)
        self._layout = layout = QVBoxLayout(self)
        layout.addWidget(self.single)
        layout.addWidget(self.totals)
        layout.addWidget(self.on)
        layout.addWidget(self.hosts_box)
        layout.addWidget(self.instances_box)
        layout.addWidget(self.gpus_box)
        layout.addStretch(1)  # the room below: GPUs take it up to as many as there are
        self._show_cluster(False)

    @staticmethod
    def _box(title: str, *widgets: QWidget) -> QGroupBox:
        box = QGroupBox(title)
        column = QVBoxLayout(box)
        for widget in widgets:
            column.addWidget(widget)
        return box

    def _show_cluster(self, cluster: bool) -> None:
        self.single.setVisible(not cluster)
        for widget in (self.totals, self.on, self.hosts_box, self.instances_box, self.gpus_box):
            widget.setVisible(cluster)

    def set_current_url(self, url: str, not_answering: frozenset[str] = frozenset()) -> None:
        """The instance URL this dashboard reads from now (marked "connected" in the instances), and the ids of
        instances its connection failed on (marked "did not answer this dashboard" while listed as live)."""
        self.instances_model.set_current_url(url, not_answering)
        self.on.setText(f"Reading from {url}")

    def apply_snapshot(self, snap: Snapshot) -> None:
        cluster = is_cluster(snap)
        self._show_cluster(cluster)
        if not cluster:
            self.single.setText(SINGLE_SERVER)
            return
        self.totals.setText(totals_text(cluster_totals(snap)))
        self.hosts_model.apply_snapshot(snap)
        self.instances_model.apply_snapshot(snap)
        _fit_rows(self.hosts_table)
        _fit_rows(self.instances_table)
        self._show_gpus(snap)

    def _show_gpus(self, snap: Snapshot) -> None:
        """Rebuild the by-host list only when what it shows changed (no flicker at 10 snapshots a second)."""
        rows = self._gpu_rows_of(snap)
        self.gpus.setVisible(bool(rows))
        self.no_gpus.setVisible(not rows)
        self._layout.setStretchFactor(self.gpus_box, 1 if rows else 0)
        if rows == self._gpu_rows:
            return
        self._gpu_rows = rows
        self.gpus.clear()
        for host, host_stale, devices in rows:
            count = f"{len(devices)} GPU{'' if len(devices) == 1 else 's'}"
            # one line across the row: a long label must not widen the GPU columns below it
            top = QTreeWidgetItem(
                [f"{host} · {count}" + (" · host stale: its last published figures" if host_stale else "")]
            )
            top.setData(0, Qt.ItemDataRole.UserRole, host)
            font = top.font(0)
            font.setBold(True)
            top.setFont(0, font)
            for cells in devices:
                top.addChild(QTreeWidgetItem(cells))
            self.gpus.addTopLevelItem(top)
            top.setFirstColumnSpanned(True)
            top.setExpanded(True)
            if host_stale:
                for item in (top, *(top.child(i) for i in range(top.childCount()))):
                    for column in range(len(GPU_HEADERS)):
                        if item is not None:
                            item.setBackground(column, STALE_BRUSH)
        self._fit_gpus()

    def _fit_gpus(self) -> None:
        """At most as tall as its rows (the room below stays the page's, not an empty list); with less room it
        shrinks to MAX_SHOWN_ROWS rows and scrolls."""
        tree = self.gpus
        tops = (tree.topLevelItem(i) for i in range(tree.topLevelItemCount()))
        lines = sum(1 + top.childCount() for top in tops if top is not None)
        row_h = max(1, tree.sizeHintForRow(0))
        chrome = tree.header().sizeHint().height() + 2 * tree.frameWidth() + tree.horizontalScrollBar().sizeHint().height()
        tree.setMinimumHeight(chrome + min(lines, MAX_SHOWN_ROWS) * row_h)
        tree.setMaximumHeight(chrome + lines * row_h)

    def _gpu_rows_of(self, snap: Snapshot) -> list[tuple[str, bool, list[list[str]]]]:
        """(host, stale, its GPUs' cells) per host. A stale host whose GPUs the deployment no longer lists keeps
        the ones it last published (marked stale), so that a host going quiet does not look like a host with no
        GPUs; a host the deployment stops listing at all is dropped."""
        hosts = {row.id: row.stale for row in host_rows(snap)}
        listed = {host: [gpu_columns(d) for d in devices] for host, devices in gpus_by_host(snap)}
        self._last_published = {h: cells for h, cells in self._last_published.items() if h in hosts}
        self._last_published.update(listed)
        kept = {h: cells for h, cells in self._last_published.items() if h not in listed and hosts[h]}
        return [(host, hosts.get(host, False), cells) for host, cells in sorted({**listed, **kept}.items())]

    def gpu_groups(self) -> list[tuple[str, list[str]]]:
        """What the GPU list shows: (host, its GPUs' first cells), in order (for tests and scripted checks)."""
        groups = []
        for i in range(self.gpus.topLevelItemCount()):
            top = self.gpus.topLevelItem(i)
            if top is not None:
                children = (top.child(j) for j in range(top.childCount()))
                groups.append(
                    (top.data(0, Qt.ItemDataRole.UserRole), [child.text(0) for child in children if child is not None])
                )
        return groups
