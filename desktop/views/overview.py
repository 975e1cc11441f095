"""`OverviewView`: live graphs of one connection's queues, GPUs and host, drawn from numpy rings.

Snapshots may arrive ten times a second for many queues and GPUs, so points go into
rings at once but curves are redrawn at most `MAX_REDRAWS_PER_S` times a second,
each redraw handing pyqtgraph contiguous numpy views of the visible window only.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from embedded_service.model import DeviceInfo, History, QueueStats, Snapshot

from ..models.formats import format_wait
from ..series import HOST_KEY, RingSeries, SeriesBook, device_key, queue_key

WINDOWS_S = {"1 min": 60.0, "5 min": 300.0, "15 min": 900.0, "1 h": 3600.0}
MAX_REDRAWS_PER_S = 5  # new points move a 1-minute graph by 1-2 px per redraw; enough to look live
SCROLL_STEPS = 20  # live graphs move by 1/20 of the window at a time
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
    right: bool = False  # against the right-hand percent axis
    scale: float = 1.0


@dataclass(frozen=True)
class _Layout:
    """What one kind of plot shows: its curves (the first drawn on top), axis labels, and the column whose
    latest value tops the left axis."""

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
        _Curve("in use", "in_use", _BLUE, step=True),
        _Curve("limit", "limit", _RED, dashed=True, step=True),
        _Curve("waiting", "waiting", _AMBER, step=True),
        _Curve("waiting high-water", "waiting_hwm", _AMBER, dashed=True, step=True),
    ),
    left_label="slots / requests",
    left_units="count",
)
GPU_LAYOUT = _Layout(
    curves=(
        _Curve("used", "memory_used_mib", _GREEN, scale=_GIB),
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
        _Curve("memory used", "memory_used_mib", _GREEN, scale=_GIB),
        _Curve("CPU", "cpu_pct", _TEAL, right=True),
    ),
    left_label="memory",
    left_units="GiB",
    right_label="CPU",
    total_column="memory_total_mib",
)


def _axis_label(label: str, units: str) -> str:
    return f"{label} ({units})"


def paused_spans(t: np.ndarray, paused: np.ndarray, x_range: tuple[float, float]) -> list[tuple[float, float]]:
    """The (start, end) times where `paused` is 1, clipped to `x_range`; a run still going ends at x_range's end."""
    on = np.nan_to_num(paused, nan=0.0) > 0.5
    if not on.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([False], on, [False])).astype(np.int8)))
    spans = []
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        end = t[stop] if stop < len(t) else x_range[1]
        if end >= x_range[0] and t[start] <= x_range[1]:
            spans.append((max(float(t[start]), x_range[0]), min(float(end), x_range[1])))
    return spans


def queue_summary(q: QueueStats) -> str:
    """The figures an operator glances for, as rich text: in use/limit, waiting, peak (with its time),
    est. wait, stuck, paused."""
    parts = [f"<b>{q.in_use}/{q.config.limit}</b> in use", f"<b>{q.waiting}</b> waiting"]
    peak = f"peak <b>{q.marks.waiting}</b> waiting"
    if q.marks.waiting_at:
        peak += " at " + dt.datetime.fromtimestamp(q.marks.waiting_at).strftime("%H:%M")
    parts.append(peak)
    parts.append(f"est. wait <b>{format_wait(q.est_wait_s)}</b>")
    if q.stuck:
        parts.append(f"<span style='color:#cf222e'><b>{q.stuck} stuck</b></span>")
    if q.config.paused:
        parts.append("<span style='color:#bf8700'><b>PAUSED</b></span>")
    return " · ".join(parts)


def device_summary(d: DeviceInfo) -> str:
    parts = []
    if d.memory_total_mib:
        used = (d.memory_used_mib or 0) / _MIB_PER_GIB
        parts.append(f"<b>{used:.1f}</b> of {d.memory_total_mib / _MIB_PER_GIB:.1f} GiB used")
    if d.memory_reserved_mib:
        parts.append(f"{d.memory_reserved_mib / _MIB_PER_GIB:.1f} GiB reserved")
    if d.utilization_pct is not None:
        parts.append(f"<b>{d.utilization_pct:.0f}%</b> busy")
    if d.leases:
        parts.append(f"{len(d.leases)} lease{'s' if len(d.leases) != 1 else ''}")
    return " · ".join(parts) or (d.error or "")


def host_summary(snap: Snapshot) -> str:
    host = snap.host
    if host is None:
        return ""
    parts = []
    if host.cpu_pct is not None:
        parts.append(f"CPU <b>{host.cpu_pct:.0f}%</b>")
    if host.memory_total_mib:
        used = (host.memory_used_mib or 0) / _MIB_PER_GIB
        parts.append(f"memory <b>{used:.1f}</b> of {host.memory_total_mib / _MIB_PER_GIB:.1f} GiB")
    if host.load_1m is not None:
        parts.append(f"load {host.load_1m:.2f}")
    return " · ".join(parts)


class CountAxis(pg.AxisItem):
    """A left axis for counts (slots, requests): ticks only at whole numbers, never at 0.1 slot."""

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:
        levels = [(float(max(1, round(spacing))), 0.0) for spacing, _ in super().tickSpacing(minVal, maxVal, size)]
        unique = list(dict.fromkeys(levels))
        return unique[:2] or [(1.0, 0.0)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [str(round(v)) if abs(v - round(v)) < 1e-6 else "" for v in values]


PLOT_HEIGHT = 250
"""The height a plot asks for under its summary: rows of plots in a short window scroll rather than each
taking the PlotWidget's default 480 px (which hid the time axis below the fold)."""


class _Plot(pg.PlotWidget):
    """A PlotWidget that asks for `PLOT_HEIGHT` (layouts in a scroll area give it what it asks for)."""

    def sizeHint(self) -> QSize:
        return QSize(400, PLOT_HEIGHT)


def _foreground() -> str:
    colour = pg.getConfigOption("foreground")
    return colour if isinstance(colour, str) else pg.mkColor(colour).name()


class _Panel:
    """One PlotWidget: a clock-time x axis, curves against a left axis and optionally a 0-100 % right axis,
    under a one-line summary of the current figures (`box` holds both)."""

    def __init__(self, title: str, layout: _Layout) -> None:
        self.layout = layout
        axes = {"bottom": pg.DateAxisItem(orientation="bottom")}
        if layout.left_units == "count":
            axes["left"] = CountAxis(orientation="left")
        self.widget = _Plot(axisItems=axes)
        self.widget.setMinimumHeight(230)
        self.summary = QLabel("")
        self.summary.setObjectName("plotSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.box = QWidget()
        box_layout = QVBoxLayout(self.box)
        box_layout.setContentsMargins(0, 0, 0, 0)
        box_layout.setSpacing(2)
        box_layout.addWidget(self.summary)
        box_layout.addWidget(self.widget, 1)
        self.plot = self.widget.getPlotItem()
        self._title = title
        self.plot.setTitle(title, color=_foreground())
        self._paused_regions: list[pg.LinearRegionItem] = []
        self.plot.setLabel("left", _axis_label(layout.left_label, layout.left_units))
        self.plot.setMouseEnabled(x=True, y=False)  # drag and wheel move through time only
        self.plot.hideButtons()
        self.vb = self.plot.getViewBox()
        self.vb.disableAutoRange()  # draw() sets both ranges: autoranging at paint time repaints the whole plot
        self._y_top = 0.0
        self.legend = self._add_legend(len(layout.curves))
        self.percent_vb = self._add_percent_axis(layout.right_label) if layout.right_label else None
        self.total_line: pg.InfiniteLine | None = None
        self._total: float | None = None
        if layout.total_column:  # no label on the line: data would cover it; the summary above says the total
            self.total_line = pg.InfiniteLine(
                angle=0, movable=False, pen=pg.mkPen(_GREY, width=1, style=Qt.PenStyle.DashLine)
            )
            self.total_line.hide()
            self.plot.addItem(self.total_line, ignoreBounds=True)
        self.curves: dict[str, pg.PlotDataItem] = {}
        for i, spec in enumerate(layout.curves):
            self.curves[spec.label] = item = self._add_curve(spec)
            item.setZValue(len(layout.curves) - i)  # the first on top
        if "limit" in self.curves:  # the dashed limit above "in use": at a full queue both stay visible
            self.curves["limit"].setZValue(len(layout.curves) + 1)
        if "waiting" in self.curves:  # a filled area: spikes in the line read at a glance
            self.curves["waiting"].setFillLevel(0)
            self.curves["waiting"].setBrush(pg.mkBrush(212, 167, 44, 60))

    def _add_legend(self, columns: int) -> pg.LegendItem:
        """A one-row legend in the (hidden) top axis' row, above the data rather than over it."""
        legend = pg.LegendItem(colCount=columns, labelTextSize="8pt", frame=False)
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
        vb.disableAutoRange()
        vb.setYRange(-3, 105, padding=0)
        self.vb.sigResized.connect(lambda: vb.setGeometry(self.vb.sceneBoundingRect()))
        self.vb.sigXRangeChanged.connect(lambda _vb, r: vb.setXRange(r[0], r[1], padding=0))
        return vb

    def _add_curve(self, spec: _Curve) -> pg.PlotDataItem:
        pen = pg.mkPen(spec.color, width=1)  # wider lines cost several times more to draw in Qt's raster engine
        if spec.dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        item = pg.PlotDataItem(pen=pen, name=spec.label, antialias=False, stepMode="left" if spec.step else None)
        # Set after construction: without data, PlotDataItem's constructor ignores these two options.
        item.setClipToView(True)
        item.setDownsampling(auto=True, method="peak")
        if spec.right and self.percent_vb is not None:
            self.percent_vb.addItem(item)
            self.legend.addItem(item, spec.label)
        else:
            self.plot.addItem(item)
        return item

    def set_title(self, title: str) -> None:
        if self._title != title:
            self._title = title
            self.plot.setTitle(title, color=_foreground())

    def restyle(self) -> None:
        """Recolour title, legend and axes from pyqtgraph's current options (after a theme switch)."""
        fg = _foreground()
        self.widget.setBackground(pg.getConfigOption("background"))
        self.plot.setTitle(self._title, color=fg)
        self.legend.setLabelTextColor(fg)
        for _sample, label in self.legend.items:
            label.setText(label.text, color=fg)
        for name in ("left", "bottom", "right"):
            axis = self.plot.getAxis(name)
            axis.setTextPen(fg)
            axis.setPen(fg)
            if axis.labelText:
                axis.setLabel(axis.labelText, axis.labelUnits, color=fg)
        self.widget.update()

    def set_summary(self, html: str) -> None:
        if self.summary.text() != html:
            self.summary.setText(html)

    def shade(self, spans: list[tuple[float, float]]) -> None:
        """Shade these time spans (paused periods) behind the curves."""
        while len(self._paused_regions) < len(spans):
            region = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(140, 149, 159, 60), pen=pg.mkPen(None))
            region.setZValue(-100)
            self.plot.addItem(region, ignoreBounds=True)
            self._paused_regions.append(region)
        for region, span in zip(self._paused_regions, spans, strict=False):
            region.setRegion(span)
            region.show()
        for region in self._paused_regions[len(spans) :]:
            region.hide()

    def on_screen(self) -> bool:
        """Whether any of the plot is visible (not scrolled away, not on a hidden tab)."""
        return self.widget.isVisible() and not self.widget.viewport().visibleRegion().isEmpty()

    def set_x_range(self, x0: float, x1: float) -> None:
        self.vb.setXRange(x0, x1, padding=0)

    def x_range(self) -> tuple[float, float]:
        x0, x1 = self.vb.viewRange()[0]
        return float(x0), float(x1)

    def draw(self, ring: RingSeries | None, since_t: float | None, x_range: tuple[float, float]) -> None:
        """Push the ring's points at or after `since_t` into the curves and fit the left axis to those in `x_range`."""
        if ring is None:
            return
        t, values = ring.view(since_t)
        lo, hi = np.searchsorted(t, x_range)
        peak = -np.inf
        for spec in self.layout.curves:
            y = values[ring.column(spec.column)]
            if spec.scale != 1.0:
                y = y * spec.scale
            self.curves[spec.label].setData(t, y)
            if not spec.right:
                peak = max(peak, float(np.fmax.reduce(y[lo:hi], initial=-np.inf)))  # fmax skips NaN
        if self.layout.total_column:
            totals = values[ring.column(self.layout.total_column)]
            known = totals[np.isfinite(totals)]
            if len(known):
                self._show_total(float(known[-1]) / _MIB_PER_GIB)
        if "paused" in ring.columns:
            self.shade(paused_spans(t, values[ring.column("paused")], x_range))
        self._fit_y(peak)

    def _show_total(self, total: float) -> None:
        if total != self._total and self.total_line is not None:
            self._total = total
            self.total_line.show()  # before setValue: a hidden line's label keeps its old text
            self.total_line.setValue(total)

    def _fit_y(self, peak: float) -> None:
        """Left axis from 0 to the total, or to a little above the visible peak. It changes only when the
        data leaves it or falls far below, since every change repaints the whole plot."""
        if self._total is not None:
            top = self._total * 1.08
        elif peak * 1.05 > self._y_top or peak < self._y_top * 0.4:
            top = max(peak * 1.2, 1.0)
        else:
            return
        if top != self._y_top:
            self._y_top = top
            self.vb.setYRange(-0.03 * top, top, padding=0)  # a little below 0, so lines at 0 clear the axis

    def set_stale(self, stale: bool) -> None:
        opacity = _STALE_OPACITY if stale else 1.0
        self.plot.setOpacity(opacity)
        if self.percent_vb is not None:
            self.percent_vb.setOpacity(opacity)


WAITING_TEXT = "Waiting for the first figures from the service…"


class OverviewView(QWidget):
    """Per queue, per GPU and host graphs of one connection, following live data or paused to look back."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.book = SeriesBook()
        self._panels: dict[str, _Panel] = {}
        self._order: list[str] = []
        self._window_s = WINDOWS_S["5 min"]
        self._x_range: tuple[float, float] | None = None  # what every plot shows (once drawn)
        self._live = True
        self.max_redraws_per_s = MAX_REDRAWS_PER_S
        self._stale = False
        self._seen_snapshot = False
        self._active = True
        self._wanted: dict[str, str] = {}
        self._last_snap: Snapshot | None = None
        self._dirty = False
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
        self.empty_label = QLabel(WAITING_TEXT)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)

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
        for column in range(COLUMNS):  # equal columns whatever each plot's legend asks for
            self._grid.setColumnStretch(column, 1)
        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setWidget(self._grid_host)
        self._scroll.verticalScrollBar().valueChanged.connect(self._request_redraw)  # plots scrolled into view

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self._scroll, 1)

    # --- data in -------------------------------------------------------------

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Record one snapshot; the graphs follow at the next throttled redraw."""
        self.book.apply_snapshot(snap)
        self._seen_snapshot = True
        wanted = {queue_key(name): f"Queue {name}" for name in sorted(q.config.name for q in snap.queues)}
        for d in sorted(snap.devices, key=lambda d: d.index):
            wanted[device_key(d.index)] = f"GPU {d.index} · {d.name}"
        wanted[HOST_KEY] = _host_title(snap)
        self._last_snap = snap
        changed = self._show(wanted)
        if not self._active:
            return  # a server not in focus: its rings fill, its plots are made when it is chosen
        self._summarize(snap)
        if changed or self._live or self._shows_newest():
            self._request_redraw()  # paused on the past, new points change nothing on screen: no redraw

    def backfill(self, history: History) -> None:
        """Fill the rings from /v1/history; live points already held are kept as they are."""
        self.book.backfill(history)
        if not self._seen_snapshot:  # a snapshot, when there is one, says which queues and GPUs exist now
            wanted = {queue_key(name): f"Queue {name}" for name in sorted(history.queues)}
            for index in sorted(history.devices, key=int):
                wanted[device_key(index)] = f"GPU {index}"
            wanted[HOST_KEY] = "Host"
            self._show(wanted)
        elif self._active:
            self._drop_unshown_rings()
        if self._active:
            self._request_redraw()

    def set_active(self, active: bool) -> None:
        """Draw (True) or not (False). Inactive, the view only records points: its plots are deleted (a
        dashboard watching ten servers keeps the plots of the one in focus) and made again from the rings
        when it becomes active. Its rings follow: an hour at 10 Hz in focus, at 1 Hz out of it."""
        if active == self._active:
            return
        self._active = active
        self.book.set_focus(active)  # out of focus: an hour at 1 Hz, a tenth of the memory (series.py)
        self._show(self._wanted)
        if active:
            if self._last_snap is not None:
                self._summarize(self._last_snap)
            self.redraw()

    def _show(self, wanted: dict[str, str]) -> bool:
        self._wanted = wanted
        if self._active:
            return self._sync_panels(wanted)
        for key in [k for k in self.book if k not in wanted]:
            self.book.discard(key)
        if self._panels:
            for panel in self._panels.values():
                self._grid.removeWidget(panel.box)
                panel.box.setParent(None)
                panel.box.deleteLater()
            self._panels.clear()
            self._order = []
        return False

    def _summarize(self, snap: Snapshot) -> None:
        for q in snap.queues:
            self._panels[queue_key(q.config.name)].set_summary(queue_summary(q))
        for d in snap.devices:
            self._panels[device_key(d.index)].set_summary(device_summary(d))
        self._panels[HOST_KEY].set_summary(host_summary(snap))

    def restyle(self) -> None:
        """Repaint every plot in the current theme's colours: titles, legends, axes (after Ctrl+T)."""
        for panel in self._panels.values():
            panel.restyle()

    def show_problem(self, text: str) -> None:
        """Say why no figures come (a refused token, a broken set-up) in place of the waiting line; "" clears."""
        self.empty_label.setText(text or WAITING_TEXT)
        self.empty_label.setProperty("problem", bool(text))
        self.empty_label.setStyleSheet("color: #cf222e; font-weight: bold;" if text else "")

    def set_stale(self, stale: bool) -> None:
        """Grey the graphs out while the connection's data is old."""
        self._stale = stale
        self.stale_label.setVisible(stale)
        for panel in self._panels.values():
            panel.set_stale(stale)

    # --- operator controls ----------------------------------------------------

    @property
    def live(self) -> bool:
        return self._live

    def set_window(self, seconds: float) -> None:
        """Show `seconds` of time; when paused, keep the right edge where the operator left it."""
        self._window_s = seconds
        label = next((k for k, v in WINDOWS_S.items() if v == seconds), None)
        if label is not None and self.window_box.currentText() != label:
            self.window_box.setCurrentText(label)
        if not self._live and self._x_range is not None:
            right = self._x_range[1]
            self._show_range(right - seconds, right)
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
        """The time span (wall-clock seconds) every plot shows; None before any data."""
        return self._x_range

    # --- drawing -----------------------------------------------------------------

    def redraw(self) -> None:
        """Push ring views into the plots on screen and, when live, keep the newest data in view.

        Drawing is most of the dashboard's CPU, so plots scrolled out of sight or on a hidden
        tab are skipped (scrolling or showing the view draws them), and live plots scroll in
        steps of 1/SCROLL_STEPS of the window: moving the time axis repaints a whole plot,
        while new points alone repaint a sliver at its right.
        """
        self._dirty = False
        self._last_redraw = time.monotonic()
        now = self.book.last_t
        if now is None:
            return
        if self._live or self._x_range is None:
            step = self._window_s / SCROLL_STEPS
            right = math.ceil(now / step) * step
            self._x_range = (right - self._window_s, right)
        since = self._x_range[0] - _MARGIN_S if self._live else None  # paused: all of it, to look back
        for key in self._order:
            panel = self._panels[key]
            if panel.on_screen():
                panel.set_x_range(*self._x_range)
                panel.draw(self.book.get(key), since, self._x_range)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._request_redraw()

    def _redraw_interval_s(self) -> float:
        """Seconds between redraws: redrawing before the graphs move by a pixel only costs CPU,
        so 0.1 s for short windows, longer for long ones, never more than a second."""
        plot_px = max(self._scroll.viewport().width() / COLUMNS - 80, 100)
        return min(max(self._window_s / plot_px, 1.0 / self.max_redraws_per_s), 1.0)

    def _request_redraw(self) -> None:
        self._dirty = True
        if not self._redraw_timer.isActive():
            wait_s = self._last_redraw + self._redraw_interval_s() - time.monotonic()
            self._redraw_timer.start(max(0, int(wait_s * 1000)))

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self.redraw()

    def _show_range(self, x0: float, x1: float) -> None:
        self._x_range = (x0, x1)
        for panel in self._panels.values():
            panel.set_x_range(x0, x1)

    def _on_user_range(self, panel: _Panel) -> None:
        """A drag or wheel on any graph pauses following and moves every graph to the same time span."""
        self._show_range(*panel.x_range())
        if self._live:
            self.set_live(False)
        else:
            self._request_redraw()  # fit the y axes to what is now in view

    # --- plots appearing and disappearing ------------------------------------------

    def _shows_newest(self) -> bool:
        newest = self.book.last_t
        return self._x_range is None or newest is None or newest <= self._x_range[1]

    def _sync_panels(self, wanted: dict[str, str]) -> bool:
        """Plots for exactly the `wanted` keys, in order; True when a plot came or went."""
        changed = wanted.keys() != self._panels.keys()
        for key in [k for k in self._panels if k not in wanted]:
            panel = self._panels.pop(key)
            self._grid.removeWidget(panel.box)
            panel.box.setParent(None)
            panel.box.deleteLater()
        for key, title in wanted.items():
            shown = self._panels.get(key)
            if shown is None:
                self._panels[key] = self._new_panel(key, title)
            else:
                shown.set_title(title)
        self._drop_unshown_rings()
        order = list(wanted)
        if order != self._order:
            self._order = order
            self._relayout()
        return changed

    def _drop_unshown_rings(self) -> None:
        """Rings of queues or GPUs that are gone (deleted, or only in old history) are dropped with their plots."""
        for key in [k for k in self.book if k not in self._panels]:
            self.book.discard(key)

    def _new_panel(self, key: str, title: str) -> _Panel:
        layout = QUEUE_LAYOUT if key.startswith("queue:") else GPU_LAYOUT if key.startswith("gpu:") else HOST_LAYOUT
        panel = _Panel(title, layout)
        panel.set_stale(self._stale)
        panel.vb.sigRangeChangedManually.connect(lambda _mask, p=panel: self._on_user_range(p))
        return panel

    def _relayout(self) -> None:
        for panel in self._panels.values():
            self._grid.removeWidget(panel.box)
        self.empty_label.setVisible(not self._order)
        for i, key in enumerate(self._order):
            widget = self._panels[key].box
            self._grid.addWidget(widget, 1 + i // COLUMNS, i % COLUMNS)
            widget.show()  # now, not from Qt's queued show, so the next redraw already draws it
        self._grid.activate()


def _host_title(snap: Snapshot) -> str:
    host = snap.host
    if host is None or host.cpu_count is None:
        return "Host"
    return f"Host · {host.cpu_count} CPUs"

