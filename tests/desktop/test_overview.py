"""OverviewView on real widgets (offscreen): plots follow the service's queues and GPUs, the window and
live/paused controls move the x range, and a long run of live updates keeps drawing."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QScrollArea

from desktop.views.overview import SCROLL_STEPS, OverviewView
from embedded_service.model import (
    DeviceInfo,
    DeviceSeries,
    History,
    HostInfo,
    Marks,
    QueueConfig,
    QueueSeries,
    QueueStats,
    Snapshot,
    Totals,
)

T0 = 1_760_000_000.0


def queue(name: str, in_use: int = 0, limit: int = 4, waiting: int = 0, hwm: int = 0) -> QueueStats:
    return QueueStats(
        config=QueueConfig(name=name, limit=limit), in_use=in_use, waiting=waiting, owners=1,
        marks=Marks(waiting=hwm), totals=Totals(),
    )  # fmt: skip


def gpu(index: int, used: int | None = 1024, reserved: int = 2048) -> DeviceInfo:
    return DeviceInfo(
        index=index, name="NVIDIA H100", memory_total_mib=81920, memory_used_mib=used,
        memory_reserved_mib=reserved, utilization_pct=50.0,
    )  # fmt: skip


def snapshot(at: float, queues: list[QueueStats], devices: list[DeviceInfo] | None = None) -> Snapshot:
    host = HostInfo(cpu_pct=20.0, cpu_count=8, memory_total_mib=65536, memory_used_mib=32768)
    return Snapshot(seq=int(at * 10), at=at, queues=queues, devices=devices or [], host=host)


@pytest.fixture
def view(qtbot) -> OverviewView:  # type: ignore[no-untyped-def]
    v = OverviewView()
    qtbot.addWidget(v)
    v.resize(1200, 800)
    v.show()
    return v


def curve_data(view: OverviewView, key: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = view.curve(key, label).getOriginalDataset()
    assert x is not None and y is not None
    return x, y


def test_plots_follow_queues_and_devices_appearing_and_disappearing(view: OverviewView) -> None:
    view.apply_snapshot(snapshot(T0, [queue("chat")]))
    assert view.plot_keys() == ["queue:chat", "host"]
    view.apply_snapshot(snapshot(T0 + 1, [queue("embed"), queue("chat")], [gpu(1), gpu(0)]))
    assert view.plot_keys() == ["queue:chat", "queue:embed", "gpu:0", "gpu:1", "host"]
    assert view.plot_widget("gpu:1").getPlotItem().titleLabel.text == "GPU 1 · NVIDIA H100"
    view.apply_snapshot(snapshot(T0 + 2, [queue("embed")], [gpu(1)]))
    assert view.plot_keys() == ["queue:embed", "gpu:1", "host"]
    assert "queue:chat" not in view.book and "gpu:0" not in view.book


def test_in_use_curve_holds_the_pushed_values(view: OverviewView) -> None:
    pushed = [0, 1, 3, 2, 4, 4, 1]
    for i, n in enumerate(pushed):
        view.apply_snapshot(snapshot(T0 + i, [queue("chat", in_use=n, waiting=5 - n, hwm=5)]))
    view.redraw()
    x, y = curve_data(view, "queue:chat", "in use")
    assert y.tolist() == pushed
    assert x.tolist() == [T0 + i for i in range(len(pushed))]
    assert curve_data(view, "queue:chat", "limit")[1].tolist() == [4] * len(pushed)
    assert curve_data(view, "queue:chat", "waiting high-water")[1].tolist() == [5] * len(pushed)


def test_gpu_memory_is_drawn_in_gib_against_the_total(view: OverviewView) -> None:
    view.apply_snapshot(snapshot(T0, [], [gpu(0, used=None), gpu(1)]))
    view.apply_snapshot(snapshot(T0 + 1, [], [gpu(0, used=10240, reserved=20480), gpu(1)]))
    view.redraw()
    _, used = curve_data(view, "gpu:0", "used")
    assert np.isnan(used[0]) and used[1] == 10.0
    assert curve_data(view, "gpu:0", "reserved")[1].tolist() == [2.0, 20.0]
    assert view.plot_widget("gpu:0").getPlotItem().getAxis("left").labelText == "memory (GiB)"


def test_left_axis_keeps_every_line_in_view(view: OverviewView) -> None:
    for i, n in enumerate([1, 5, 30, 2]):
        view.apply_snapshot(snapshot(T0 + i, [queue("chat", in_use=n, limit=16)], [gpu(0, used=81000)]))
    view.redraw()
    bottom, top = view.plot_widget("queue:chat").getPlotItem().getViewBox().viewRange()[1]
    assert bottom < 0 and top > 30
    bottom, top = view.plot_widget("gpu:0").getPlotItem().getViewBox().viewRange()[1]
    assert bottom < 0 and top > 80  # the total, 80 GiB, with its line and label


def test_redraws_follow_snapshots_without_an_explicit_redraw(view: OverviewView, qtbot) -> None:  # type: ignore[no-untyped-def]
    for i in range(50):
        view.apply_snapshot(snapshot(T0 + i / 10, [queue("chat", in_use=i % 5)]))
    qtbot.waitUntil(lambda: curve_data(view, "queue:chat", "in use")[0][-1] == T0 + 4.9)
    assert curve_data(view, "queue:chat", "in use")[1][-1] == 49 % 5


def test_plots_scrolled_into_view_get_drawn(view: OverviewView, qtbot) -> None:  # type: ignore[no-untyped-def]
    view.apply_snapshot(snapshot(T0, [queue(f"q{i:02}", in_use=i) for i in range(12)]))
    QApplication.processEvents()  # the scroll area sizes its grid of 13 plots
    view.redraw()
    assert curve_data(view, "queue:q00", "in use")[1].tolist() == [0]
    assert view.curve("host", "CPU").getOriginalDataset() == (None, None)  # below the fold: not drawn yet
    scroll = view.findChild(QScrollArea)
    scroll.verticalScrollBar().setValue(scroll.verticalScrollBar().maximum())
    qtbot.waitUntil(lambda: view.curve("host", "CPU").getOriginalDataset()[1] is not None)
    assert curve_data(view, "host", "CPU")[1].tolist() == [20.0]


def test_backfill_then_live_draws_each_instant_once_in_order(view: OverviewView) -> None:
    live = [snapshot(T0 + 8 + i, [queue("chat", in_use=9)]) for i in range(3)]
    view.apply_snapshot(live[0])  # the event stream can win the race with /v1/history
    history = History(
        t=[T0 + i for i in range(10)],
        queues={"chat": QueueSeries(in_use=list(range(10)), waiting=[0] * 10, limit=[4] * 10)},
        devices={"0": DeviceSeries(memory_used_mib=[1.0] * 10, memory_reserved_mib=[0.0] * 10, utilization_pct=[None] * 10)},
        host_cpu_pct=[1.0] * 10,
        host_memory_used_mib=[2.0] * 10,
    )
    view.backfill(history)
    for snap in live[1:]:
        view.apply_snapshot(snap)
    view.redraw()
    x, y = curve_data(view, "queue:chat", "in use")
    assert x.tolist() == [T0 + i for i in range(11)]
    assert y.tolist() == [*range(8), 9, 9, 9]
    assert "gpu:0" not in view.plot_keys()  # history knew a GPU the live service no longer has


def test_backfill_before_any_snapshot_shows_history_plots(view: OverviewView) -> None:
    history = History(t=[T0, T0 + 1], queues={"chat": QueueSeries(in_use=[1, 2], waiting=[0, 0], limit=[3, 3])})
    view.backfill(history)
    view.redraw()
    assert view.plot_keys() == ["queue:chat", "host"]
    assert curve_data(view, "queue:chat", "in use")[1].tolist() == [1, 2]


def test_window_selector_changes_the_visible_time_span(view: OverviewView) -> None:
    for i in range(0, 4000, 10):
        view.apply_snapshot(snapshot(T0 + i, [queue("chat")]))
    view.redraw()
    newest = T0 + 3990
    for label, seconds in (("1 min", 60), ("15 min", 900), ("1 h", 3600), ("5 min", 300)):
        view.window_box.setCurrentText(label)
        x0, x1 = view.x_range()
        assert x1 - x0 == pytest.approx(seconds, abs=1e-3)
        assert newest <= x1 < newest + seconds / SCROLL_STEPS  # the newest point is in view, at the right
        shown = view.plot_widget("host").getPlotItem().getViewBox().viewRange()[0]
        assert shown == pytest.approx([x0, x1], abs=1e-3)


def test_paused_view_stays_put_and_live_snaps_back(view: OverviewView) -> None:
    for i in range(100):
        view.apply_snapshot(snapshot(T0 + i, [queue("chat")]))
    view.redraw()
    view.live_button.click()
    assert not view.live and view.live_button.text() == "Paused"
    held = view.x_range()
    for i in range(100, 400):
        view.apply_snapshot(snapshot(T0 + i, [queue("chat")]))
    view.redraw()
    assert view.x_range() == held
    assert not held[0] <= T0 + 399 <= held[1]  # the newest data is out of view
    assert curve_data(view, "queue:chat", "in use")[0][0] == T0  # the whole buffer is there to look back at
    view.live_button.click()
    x0, x1 = view.x_range()
    assert view.live and x0 < T0 + 399 <= x1


def test_paused_on_the_past_new_snapshots_cost_no_redraw(view: OverviewView, qtbot) -> None:  # type: ignore[no-untyped-def]
    for i in range(100):
        view.apply_snapshot(snapshot(T0 + i, [queue("chat")]))
    view.redraw()
    view.set_window(60)
    view.live_button.click()
    assert not view.live and view.x_range()[1] < T0 + 110
    drawn = curve_data(view, "queue:chat", "in use")[0].tolist()
    for i in range(110, 120):  # all right of the paused view
        view.apply_snapshot(snapshot(T0 + i, [queue("chat", in_use=3)]))
    qtbot.wait(1_500)  # longer than any redraw interval
    assert curve_data(view, "queue:chat", "in use")[0].tolist() == drawn  # not redrawn: nothing new in view
    view.apply_snapshot(snapshot(T0 + 120, [queue("chat"), queue("new")]))
    qtbot.waitUntil(lambda: view.curve("queue:new", "in use").getOriginalDataset()[0] is not None)  # a new plot: drawn
    view.live_button.click()
    assert curve_data(view, "queue:chat", "in use")[0][-1] == T0 + 120


def test_scrolling_a_graph_pauses_and_moves_all_graphs_together(view: OverviewView, qtbot) -> None:  # type: ignore[no-untyped-def]
    for i in range(600):
        view.apply_snapshot(snapshot(T0 + i, [queue("chat")], [gpu(0)]))
    view.redraw()
    plot = view.plot_widget("queue:chat")
    qtbot.waitExposed(plot)
    center = plot.viewport().rect().center()
    wheel = QWheelEvent(
        QPointF(center), QPointF(plot.viewport().mapToGlobal(center)), QPoint(0, 0), QPoint(0, 240),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False,
    )  # fmt: skip
    QApplication.sendEvent(plot.viewport(), wheel)
    assert not view.live
    zoomed = view.x_range()
    assert zoomed[1] - zoomed[0] < 300
    for key in ("gpu:0", "host"):
        assert view.plot_widget(key).getPlotItem().getViewBox().viewRange()[0] == pytest.approx(list(zoomed), abs=1e-3)


def test_stale_greys_out_the_graphs(view: OverviewView) -> None:
    view.apply_snapshot(snapshot(T0, [queue("chat")]))
    view.set_stale(True)
    assert view.stale_label.isVisible()
    assert view.plot_widget("queue:chat").getPlotItem().opacity() < 1.0
    view.apply_snapshot(snapshot(T0 + 1, [queue("chat"), queue("late")]))
    assert view.plot_widget("queue:late").getPlotItem().opacity() < 1.0
    view.set_stale(False)
    assert not view.stale_label.isVisible()
    assert view.plot_widget("queue:late").getPlotItem().opacity() == 1.0


def test_long_run_of_live_plot_updates(view: OverviewView, qtbot) -> None:  # type: ignore[no-untyped-def]
    """Regression: PySide6-Essentials 6.12.0 on Python 3.11 killed the interpreter ("Fatal Python error:
    bool_dealloc") after a few thousand pyqtgraph setData calls. Every curve here gets 20,000 of them."""
    updates = 20_000
    for i in range(updates):
        at = T0 + i / 10
        view.apply_snapshot(snapshot(at, [queue("chat", in_use=i % 7, waiting=i % 3, hwm=2)], [gpu(0, used=i % 4096)]))
        view.redraw()
        if i % 500 == 0:
            QApplication.processEvents()  # paint now and then, as the running app does
    x, y = curve_data(view, "queue:chat", "in use")
    assert x[-1] == T0 + (updates - 1) / 10 and y[-1] == (updates - 1) % 7
    assert curve_data(view, "gpu:0", "used")[1][-1] == ((updates - 1) % 4096) / 1024
    assert curve_data(view, "host", "CPU")[1][-1] == 20.0


def ring_buffers(view: OverviewView) -> dict[str, tuple[int, int, int]]:
    """Per ring: (bytes of times, of values, address of the values), to see that nothing was reallocated or grew."""
    rings = {key: view.book.get(key) for key in view.book}
    return {
        key: (r._t.nbytes, r._v.nbytes, r._v.__array_interface__["data"][0]) for key, r in rings.items() if r is not None
    }


def held_bytes(view: OverviewView) -> int:
    """What the rings' arrays hold, as counted from the arrays themselves."""
    return sum(t + v for t, v, _ in ring_buffers(view).values())


def test_graph_memory_is_fixed_when_the_rings_are_made_and_a_tenth_out_of_focus(view: OverviewView) -> None:
    """Budget (series.py): per point 8 B of time + 4 B per column; in focus an hour at 10 Hz,
    out of focus an hour at 1 Hz. Two hours of history and live points later, no ring grew or moved."""
    view.apply_snapshot(snapshot(T0, [queue("a", in_use=1), queue("b")], [gpu(0)]))
    made = ring_buffers(view)
    per_point = 2 * (8 + 5 * 4) + (8 + 4 * 4) + (8 + 3 * 4)  # 2 queues, 1 GPU, the host
    assert held_bytes(view) == 36_000 * per_point  # 3.6 MB (float64, mirrored, lazily touched: was 12.1 MB)

    n = 72_000  # two hours at 10 Hz from /v1/history, older than the live point
    t = (T0 - n / 10 + np.arange(n) / 10).tolist()
    ones = [1] * n
    view.backfill(
        History(
            t=t,
            queues={name: QueueSeries(in_use=ones, waiting=ones, limit=[4] * n) for name in ("a", "b")},
            devices={"0": DeviceSeries(memory_used_mib=ones, memory_reserved_mib=ones, utilization_pct=ones)},
            host_cpu_pct=ones,
            host_memory_used_mib=ones,
        )
    )
    for i in range(1, 51):
        view.apply_snapshot(snapshot(T0 + i / 10, [queue("a", in_use=2), queue("b")], [gpu(0)]))
    assert ring_buffers(view) == made
    ring = view.book.get("queue:a")
    assert ring is not None and len(ring) == 36_000
    ts, values = ring.view()
    assert ts[-1] == T0 + 5.0 and values[ring.column("in_use")][-1] == 2
    view.redraw()
    assert curve_data(view, "queue:a", "in use")[0][-1] == T0 + 5.0  # the chart still shows the newest point

    view.set_active(False)  # another server in focus: this one's rings hold an hour at 1 Hz
    assert held_bytes(view) == 3_600 * per_point
    ring = view.book.get("queue:a")
    assert ring is not None and ring.capacity == 3_600
    ts, values = ring.view()
    assert ts[-1] == T0 + 5.0 and values[ring.column("in_use")][-1] == 2  # the newest point of its second
    assert (np.floor(ts[1:]) - np.floor(ts[:-1])).min() == 1  # one point per whole second, the newest of each
    assert ts[-1] - ts[0] == pytest.approx(3_599, abs=1)  # an hour
    thin = ring_buffers(view)
    for i in range(51, 200):
        view.apply_snapshot(snapshot(T0 + i, [queue("a"), queue("b")], [gpu(0)]))
    assert ring_buffers(view) == thin

    view.set_active(True)  # back in focus: the hour at 1 Hz is kept, new points at 10 Hz
    assert held_bytes(view) == 36_000 * per_point
    ring = view.book.get("queue:a")
    assert ring is not None and len(ring) == 3_600 and ring.last_t == T0 + 199
    assert view.book.nbytes == held_bytes(view)  # what series.py's budget counts
