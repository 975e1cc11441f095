"""`OverviewView`: live graphs of one connection's queues, GPUs and host, drawn from numpy rings.

Snapshots may arrive ten times a second for many queues and GPUs, so points go into
rings at once but curves are redrawn at most `MAX_REDRAWS_PER_S` times a second,
each redraw handing pyqtgraph contiguous numpy views of the visible window only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from embedded_service.model import History, Snapshot

from ..series import HOST_KEY, RingSeries, SeriesBook, device_key, queue_key

WINDOWS_S = {"1 min": 60.0, "5 min": 300.0, "15 min": 900.0, "1 h": 3600.0}
MAX_REDRAWS_PER_S = 10
COLUMNS = 2
_MARGIN_S = 5.0  # one point left of the window, so a step reaches the left edge
_MIB_PER_GIB = 1024.0
_STALE_OPACITY = 0.35


@dataclass(frozen=True)
class _Curve:
    """How one series column is drawn."""

    label: str
    column: str
    color: str
    dashed: bool = False
    step: bool = False
    fill: bool = False
    right: bool = False  # against the right-hand percent axis
    scale: float = 1.0


@dataclass(frozen=True)
class _Layout:
    """What one kind of plot shows: its curves, axis labels, and the column whose latest value tops the left axis."""

    curves: tuple[_Curve, ...]
    left_label: str
    left_units: str
    right_label: str | None = None
    total_column: str | None = None


# Colours readable on both the light (white) and dark plot backgrounds.
_BLUE, _RED, _AMBER, _GREEN, _PURPLE, _TEAL, _GREY = (
    "#2f81f7", "#e5534b", "#d4a72c", "#3fb950", "#a371f7", "#1b9fb5", "#8b949e",
)  # fmt: skip
_GIB = 1 / _MIB_PER_GIB

QUEUE_LAYOUT = _Layout(
    curves=(
        _Curve("in use", "in_use", _BLUE, step=True, fill=True),
        _Curve("limit", "limit", _RED, dashed=True, step=True),
        _Curve("waiting", "waiting", _AMBER, step=True),
        _Curve("waiting high-water", "waiting_hwm", _AMBER, dashed=True, step=True),
    ),
    left_label="slots / requests",
    left_units="count",
)
GPU_LAYOUT = _Layout(
    curves=(
        _Curve("used", "memory_used_mib", _GREEN, fill=True, scale=_GIB),
        _Curve("reserved", "memory_reserved_mib", _PURPLE, step=True, scale=_GIB),
        _Curve("utilisation", "utilization_pct", _TEAL, right=True),
    ),
    left_label="memory",
    left_units="GiB",
    right_label="utilisation",
    total_column="memory_total_mib",
)
HOST_LAYOUT = _Layout(
    curves=(
        _Curve("memory used", "memory_used_mib", _GREEN, fill=True, scale=_GIB),
        _Curve("CPU", "cpu_pct", _TEAL, right=True),
    ),
    left_label="memory",
    left_units="GiB",
    right_label="CPU",
    total_column="memory_total_mib",
)


def _axis_label(label: str, units: str) -> str:
    return f"{label} ({units})"


class _LegendSample(pg.ItemSample):
    """A line over a filled band for filled curves (pyqtgraph's own sample draws a triangle)."""

    def paint(self, p: QPainter, *args: object) -> None:
        opts = self.item.opts
        if not self.item.isVisible() or opts.get("fillLevel") is None:
            super().paint(p, *args)
            return
        p.fillRect(QRectF(0, 11, 20, 7), pg.mkBrush(opts["fillBrush"]))
        p.setPen(pg.mkPen(opts["pen"]))
        p.drawLine(0, 11, 20, 11)


class _Panel:
    """One PlotWidget: a clock-time x axis, curves against a left axis and optionally a 0-100 % right axis."""

    def __init__(self, title: str, layout: _Layout) -> None:
        self.layout = layout
        self.widget = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.widget.setMinimumHeight(230)
        self.plot = self.widget.getPlotItem()
        self.plot.setTitle(title)
        self.plot.setLabel("left", _axis_label(layout.left_label, layout.left_units))
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setMouseEnabled(x=True, y=False)  # drag and wheel move through time only
        self.plot.hideButtons()
        self.vb = self.plot.getViewBox()
        self.vb.setAutoVisible(y=True)
        self.vb.enableAutoRange(y=True)
        self.legend = self._add_legend(len(layout.curves))
        self.percent_vb = self._add_percent_axis(layout.right_label) if layout.right_label else None
        self.total_line: pg.InfiniteLine | None = None
        self._total: float | None = None
        if layout.total_column:
            self.total_line = pg.InfiniteLine(
                angle=0, movable=False, pen=pg.mkPen(_GREY, width=1, style=Qt.PenStyle.DashLine),
                label="total {value:.1f} " + layout.left_units,
                labelOpts={"position": 0.02, "color": _GREY, "anchors": [(0, 0), (0, 0)]},
            )  # fmt: skip
            self.total_line.hide()
            self.plot.addItem(self.total_line, ignoreBounds=True)
        self.curves: dict[str, pg.PlotDataItem] = {}
        for spec in layout.curves:
            self.curves[spec.label] = self._add_curve(spec)

    def _add_legend(self, columns: int) -> pg.LegendItem:
        """A one-row legend in the (hidden) top axis' row, above the data rather than over it."""
        legend = pg.LegendItem(colCount=columns, labelTextSize="8pt", frame=False, sampleType=_LegendSample)
        self.plot.layout.removeItem(self.plot.getAxis("top"))
        self.plot.layout.addItem(legend, 1, 1)
        self.plot.layout.setAlignment(legend, Qt.AlignmentFlag.AlignLeft)
        self.plot.legend = legend  # PlotItem.addItem lists named items here
        return legend

    def _add_percent_axis(self, label: str) -> pg.ViewBox:
        vb = pg.ViewBox(enableMouse=False)
        vb.setZValue(-10)  # under the main view, which keeps the mouse
        self.plot.showAxis("right")
        self.plot.setLabel("right", _axis_label(label, "%"))
        self.plot.scene().addItem(vb)
        self.plot.getAxis("right").linkToView(vb)
        vb.setYRange(0, 100, padding=0.02)
        vb.enableAutoRange(x=False, y=False)
        self.vb.sigResized.connect(lambda: vb.setGeometry(self.vb.sceneBoundingRect()))
        self.vb.sigXRangeChanged.connect(lambda _vb, r: vb.setXRange(r[0], r[1], padding=0))
        return vb

    def _add_curve(self, spec: _Curve) -> pg.PlotDataItem:
        pen = pg.mkPen(spec.color, width=2 if not spec.dashed else 1.5)
        if spec.dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        item = pg.PlotDataItem(
            pen=pen, name=spec.label, antialias=False, clipToView=True, autoDownsample=True, downsampleMethod="peak",
            stepMode="left" if spec.step else None,
        )  # fmt: skip
        if spec.fill:
            color = pg.mkColor(spec.color)
            color.setAlpha(45)
            item.setFillLevel(0)
            item.setBrush(color)
        if spec.right and self.percent_vb is not None:
            self.percent_vb.addItem(item)
            self.legend.addItem(item, spec.label)
        else:
            self.plot.addItem(item)
        return item

    def set_title(self, title: str) -> None:
        if self.plot.titleLabel.text != title:
            self.plot.setTitle(title)

    def set_x_range(self, x0: float, x1: float) -> None:
        self.vb.setXRange(x0, x1, padding=0)

    def x_range(self) -> tuple[float, float]:
        x0, x1 = self.vb.viewRange()[0]
        return float(x0), float(x1)

    def draw(self, ring: RingSeries | None, since_t: float | None) -> None:
        """Push the ring's points at or after `since_t` into the curves."""
        if ring is None:
            return
        t, values = ring.view(since_t)
        for spec in self.layout.curves:
            y = values[ring.column(spec.column)]
            self.curves[spec.label].setData(t, y * spec.scale if spec.scale != 1.0 else y)
        if self.layout.total_column:
            self._show_total(ring.latest(self.layout.total_column))

    def _show_total(self, total_mib: float | None) -> None:
        total = None if total_mib is None else total_mib / _MIB_PER_GIB
        if total == self._total or self.total_line is None:
            return
        self._total = total
        if total is None:
            self.total_line.hide()
            self.vb.enableAutoRange(y=True)
            return
        self.total_line.show()  # before setValue: a hidden line's label keeps its old text
        self.total_line.setValue(total)
        self.vb.setYRange(0, total * 1.08, padding=0)

    def set_stale(self, stale: bool) -> None:
        opacity = _STALE_OPACITY if stale else 1.0
        self.plot.setOpacity(opacity)
        if self.percent_vb is not None:
            self.percent_vb.setOpacity(opacity)


class OverviewView(QWidget):
    """Per queue, per GPU and host graphs of one connection, following live data or paused to look back."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.book = SeriesBook()
        self._panels: dict[str, _Panel] = {}
        self._order: list[str] = []
        self._window_s = WINDOWS_S["5 min"]
        self._live = True
        self._stale = False
        self._seen_snapshot = False
        self._dirty = False
        self._syncing_range = False
        self._last_redraw = 0.0
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.timeout.connect(self._redraw_if_dirty)

        self.window_box = QComboBox()
        self.window_box.addItems(list(WINDOWS_S))
        self.window_box.setCurrentText("5 min")
        self.window_box.setToolTip("Time span shown by every graph")
        self.window_box.currentTextChanged.connect(lambda text: self.set_window(WINDOWS_S[text]))
        self.live_button = QPushButton("Live")
        self.live_button.setCheckable(True)
        self.live_button.setChecked(True)
        self.live_button.setToolTip("Live: graphs follow new data. Paused: drag or scroll a graph to look back.")
        self.live_button.toggled.connect(self.set_live)
        self.stale_label = QLabel("Stale: these figures are not live")
        self.stale_label.setStyleSheet("color: #bf8700; font-weight: bold;")
        self.stale_label.hide()
        self.empty_label = QLabel("Waiting for the first figures from the service…")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Window"))
        bar.addWidget(self.window_box)
        bar.addWidget(self.live_button)
        bar.addStretch(1)
        bar.addWidget(self.stale_label)

        self._grid_host = QWidget()
        self._grid = QGridLayout(self._grid_host)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.addWidget(self.empty_label, 0, 0, 1, COLUMNS)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._grid_host)

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(scroll, 1)

    # --- data in -------------------------------------------------------------

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Record one snapshot; the graphs follow within 1 / MAX_REDRAWS_PER_S seconds."""
        self.book.apply_snapshot(snap)
        self._seen_snapshot = True
        wanted = {queue_key(name): f"Queue {name}" for name in sorted(q.config.name for q in snap.queues)}
        for d in sorted(snap.devices, key=lambda d: d.index):
            wanted[device_key(d.index)] = f"GPU {d.index} · {d.name}"
        wanted[HOST_KEY] = _host_title(snap)
        self._sync_panels(wanted)
        self._request_redraw()

    def backfill(self, history: History) -> None:
        """Fill the rings from /v1/history; live points already held are kept as they are."""
        self.book.backfill(history)
        if not self._seen_snapshot:  # a snapshot, when there is one, says which queues and GPUs exist now
            wanted = {queue_key(name): f"Queue {name}" for name in sorted(history.queues)}
            for index in sorted(history.devices, key=int):
                wanted[device_key(index)] = f"GPU {index}"
            wanted[HOST_KEY] = "Host"
            self._sync_panels(wanted)
        else:
            self._drop_unshown_rings()
        self._request_redraw()

    def set_stale(self, stale: bool) -> None:
        """Grey the graphs out while the connection's data is old."""
        self._stale = stale
        self.stale_label.setVisible(stale)
        for panel in self._panels.values():
            panel.set_stale(stale)

    # --- operator controls ----------------------------------------------------

    @property
    def window_s(self) -> float:
        return self._window_s

    @property
    def live(self) -> bool:
        return self._live

    def set_window(self, seconds: float) -> None:
        """Show `seconds` of time; when paused, keep the right edge where the operator left it."""
        self._window_s = seconds
        label = next((k for k, v in WINDOWS_S.items() if v == seconds), None)
        if label is not None and self.window_box.currentText() != label:
            self.window_box.setCurrentText(label)
        if not self._live and self._order:
            right = self._panels[self._order[0]].x_range()[1]
            self._set_x_range(right - seconds, right)
        self.redraw()

    def set_live(self, live: bool) -> None:
        """Live follows new data; paused stops the x range so the operator can pan and zoom back."""
        self._live = live
        if self.live_button.isChecked() != live:
            self.live_button.setChecked(live)
        self.live_button.setText("Live" if live else "Paused")
        self.redraw()

    # --- reading back (tests, screenshots) --------------------------------------

    def plot_keys(self) -> list[str]:
        """Series keys of the plots shown, in display order."""
        return list(self._order)

    def plot_widget(self, key: str) -> pg.PlotWidget:
        return self._panels[key].widget

    def curve(self, key: str, label: str) -> pg.PlotDataItem:
        """A plot's curve by its legend label, e.g. curve("queue:chat", "in use")."""
        return self._panels[key].curves[label]

    def x_range(self) -> tuple[float, float] | None:
        return self._panels[self._order[0]].x_range() if self._order else None

    # --- drawing -----------------------------------------------------------------

    def redraw(self) -> None:
        """Push ring views into every curve now and, when live, move the window to the newest data."""
        self._dirty = False
        self._last_redraw = time.monotonic()
        now = self.book.last_t
        if now is None:
            return
        since = now - self._window_s - _MARGIN_S if self._live else None
        if self._live:
            self._set_x_range(now - self._window_s, now)
        for key in self._order:
            self._panels[key].draw(self.book.get(key), since)

    def _request_redraw(self) -> None:
        self._dirty = True
        if not self._redraw_timer.isActive():
            wait_s = self._last_redraw + 1.0 / MAX_REDRAWS_PER_S - time.monotonic()
            self._redraw_timer.start(max(0, int(wait_s * 1000)))

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self.redraw()

    def _set_x_range(self, x0: float, x1: float) -> None:
        self._syncing_range = True
        try:
            for panel in self._panels.values():
                panel.set_x_range(x0, x1)
        finally:
            self._syncing_range = False

    def _on_user_range(self, panel: _Panel) -> None:
        """A drag or wheel on any graph pauses following and moves every graph to the same time span."""
        if self._syncing_range:
            return
        if self._live:
            self.set_live(False)
        x0, x1 = panel.x_range()
        self._set_x_range(x0, x1)

    # --- plots appearing and disappearing ------------------------------------------

    def _sync_panels(self, wanted: dict[str, str]) -> None:
        for key in [k for k in self._panels if k not in wanted]:
            panel = self._panels.pop(key)
            self._grid.removeWidget(panel.widget)
            panel.widget.setParent(None)
            panel.widget.deleteLater()
        for key, title in wanted.items():
            panel = self._panels.get(key)
            if panel is None:
                self._panels[key] = self._new_panel(key, title)
            else:
                panel.set_title(title)
        self._drop_unshown_rings()
        order = list(wanted)
        if order != self._order:
            self._order = order
            self._relayout()

    def _drop_unshown_rings(self) -> None:
        """Rings of queues or GPUs that are gone (deleted, or only in old history) are dropped with their plots."""
        for key in [k for k in self.book if k not in self._panels]:
            self.book.discard(key)

    def _new_panel(self, key: str, title: str) -> _Panel:
        layout = QUEUE_LAYOUT if key.startswith("queue:") else GPU_LAYOUT if key.startswith("gpu:") else HOST_LAYOUT
        panel = _Panel(title, layout)
        panel.set_stale(self._stale)
        x = self.x_range()
        if x is not None:
            panel.set_x_range(*x)
        panel.vb.sigRangeChangedManually.connect(lambda _mask, p=panel: self._on_user_range(p))
        return panel

    def _relayout(self) -> None:
        for panel in self._panels.values():
            self._grid.removeWidget(panel.widget)
        self.empty_label.setVisible(not self._order)
        for i, key in enumerate(self._order):
            self._grid.addWidget(self._panels[key].widget, 1 + i // COLUMNS, i % COLUMNS)


def _host_title(snap: Snapshot) -> str:
    host = snap.host
    if host is None or host.cpu_count is None:
        return "Host"
    return f"Host · {host.cpu_count} CPUs"

