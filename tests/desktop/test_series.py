"""Ring buffers behind the graphs: wrap-around, windows, and backfill merged with live points."""

from __future__ import annotations

import os

import numpy as np
import pytest

from desktop.series import HOST_KEY, RingSeries, SeriesBook, device_key, queue_key
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


def snapshot(at: float, in_use: int = 1, waiting: int = 0, hwm: int = 0) -> Snapshot:
    queue = QueueStats(
        config=QueueConfig(name="chat", limit=4), in_use=in_use, waiting=waiting, owners=1,
        marks=Marks(waiting=hwm), totals=Totals(),
    )  # fmt: skip
    device = DeviceInfo(index=0, memory_total_mib=81920, memory_reserved_mib=2048, utilization_pct=40.0)  # used: unknown
    host = HostInfo(cpu_pct=12.5, memory_total_mib=65536, memory_used_mib=30000)
    return Snapshot(seq=int(at), at=at, queues=[queue], devices=[device], host=host)


def test_ring_wraps_and_keeps_the_newest_points_in_order() -> None:
    ring = RingSeries(("a", "b"), capacity=5)
    for i in range(12):
        ring.append(float(i), (i, -i))
    t, v = ring.view()
    assert len(ring) == 5
    assert t.tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert v[ring.column("a")].tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert v[ring.column("b")].tolist() == [-7.0, -8.0, -9.0, -10.0, -11.0]
    assert t.flags.c_contiguous and v[0].flags.c_contiguous


def test_view_since_returns_only_the_last_60_seconds() -> None:
    ring = RingSeries(("x",), capacity=1000)
    for i in range(600):  # ten minutes at 1 Hz, wrapped once the ring has filled
        ring.append(1000.0 + i, (i,))
    t, v = ring.view(since_t=1599.0 - 60)
    assert t[0] == 1539.0 and t[-1] == 1599.0 and len(t) == 61
    assert v[0].tolist() == list(range(539, 600))


@pytest.mark.parametrize("points", [3, 7, 10, 13, 25])
def test_every_window_of_a_wrapped_ring_matches_the_points_appended(points: int) -> None:
    ring = RingSeries(("x",), capacity=7)
    for i in range(points):
        ring.append(float(i), (10 * i,))
    kept = list(range(max(0, points - 7), points))
    for since in [None, *[s - 0.5 for s in range(points + 2)]]:
        t, v = ring.view(since_t=since)
        want = [i for i in kept if since is None or i >= since]
        assert t.tolist() == want and v[0].tolist() == [10 * i for i in want]
        assert not t.flags.writeable and v[0].flags.c_contiguous


def test_a_view_is_not_changed_by_the_points_after_it() -> None:
    ring = RingSeries(("x",), capacity=4)
    for i in range(4):
        ring.append(float(i), (i,))
    whole = ring.view()
    window = ring.view(since_t=2.0)
    ring.append(4.0, (4,))
    assert whole[0].tolist() == [0.0, 1.0, 2.0, 3.0] and whole[1][0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert window[0].tolist() == [2.0, 3.0]


def test_view_is_read_only_and_none_becomes_nan() -> None:
    ring = RingSeries(("x", "y"))
    ring.append(1.0, (None, 2.0))
    _, v = ring.view()
    assert np.isnan(v[0, 0]) and v[1, 0] == 2.0
    with pytest.raises(ValueError):
        v[1, 0] = 5.0


def test_older_live_point_is_dropped_and_same_time_replaces() -> None:
    ring = RingSeries(("x",), capacity=10)
    ring.append(10.0, (1,))
    ring.append(9.0, (2,))
    ring.append(10.0, (3,))
    t, v = ring.view()
    assert t.tolist() == [10.0] and v[0].tolist() == [3.0]


def test_backfill_after_live_data_has_no_duplicate_or_out_of_order_points() -> None:
    ring = RingSeries(("x",), capacity=100)
    for t in (105.0, 106.0, 107.0):  # live points arrived first
        ring.append(t, (t * 10,))
    history_t = np.arange(95.0, 111.0)  # overlaps the live span on both sides
    taken = ring.extend(history_t, (history_t * -1).reshape(-1, 1))
    t, v = ring.view()
    assert np.all(np.diff(t) > 0)
    assert t.tolist() == [*np.arange(95.0, 105.0), 105.0, 106.0, 107.0, *np.arange(108.0, 111.0)]
    assert v[0][t == 106.0].tolist() == [1060.0]  # the live value won inside the live span
    assert taken == 13
    ring.append(111.0, (0,))
    assert ring.view()[0][-2:].tolist() == [110.0, 111.0]


def test_backfill_larger_than_capacity_keeps_the_newest() -> None:
    ring = RingSeries(("x",), capacity=10)
    ring.extend(np.arange(50.0), np.arange(50.0).reshape(-1, 1))
    t, _ = ring.view()
    assert t.tolist() == list(np.arange(40.0, 50.0))


def test_clear_empties_the_ring() -> None:
    ring = RingSeries(("x",), capacity=3)
    ring.append(1.0, (1,))
    ring.clear()
    assert len(ring) == 0 and ring.last_t is None and len(ring.view()[0]) == 0


def test_book_appends_every_figure_of_a_snapshot() -> None:
    book = SeriesBook(capacity=100)
    book.apply_snapshot(snapshot(1000.0, in_use=3, waiting=2, hwm=5))
    q = book.ring(queue_key("chat"))
    t, v = q.view()
    assert t.tolist() == [1000.0]
    assert [v[q.column(c)][0] for c in ("in_use", "limit", "waiting", "waiting_hwm")] == [3, 4, 2, 5]
    gpu = book.ring(device_key(0))
    _, v = gpu.view()
    assert np.isnan(v[gpu.column("memory_used_mib")][0])
    assert v[gpu.column("memory_reserved_mib")][0] == 2048 and v[gpu.column("memory_total_mib")][0] == 81920
    host = book.ring(HOST_KEY)
    _, v = host.view()
    assert v[host.column("cpu_pct")][0] == 12.5 and v[host.column("memory_total_mib")][0] == 65536
    assert book.last_t == 1000.0


def test_book_backfill_then_live_snapshots() -> None:
    gpu0 = DeviceSeries(memory_used_mib=[None, 100, 200], memory_reserved_mib=[0, 0, 1024], utilization_pct=[1, 2, 3])
    history = History(
        t=[990.0, 991.0, 992.0],
        queues={"chat": QueueSeries(in_use=[1, 2, 3], waiting=[0, 1, 0], limit=[4, 4, 4])},
        devices={"0": gpu0},
        host_cpu_pct=[5.0, 6.0, 7.0],
        host_memory_used_mib=[],  # an old service that had no host probe
    )
    book = SeriesBook(capacity=100)
    book.backfill(history)
    book.apply_snapshot(snapshot(993.0, in_use=4, hwm=2))
    q = book.ring(queue_key("chat"))
    t, v = q.view()
    assert t.tolist() == [990.0, 991.0, 992.0, 993.0]
    assert v[q.column("in_use")].tolist() == [1, 2, 3, 4]
    hwm = v[q.column("waiting_hwm")]
    assert np.isnan(hwm[:3]).all() and hwm[3] == 2  # history has no high-water mark
    gpu = book.ring(device_key(0))
    assert gpu.view()[1][gpu.column("memory_used_mib")][1:3].tolist() == [100.0, 200.0]
    host = book.ring(HOST_KEY)
    assert np.isnan(host.view()[1][host.column("memory_used_mib")][:3]).all()


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from Linux's /proc")
def test_a_ring_is_resident_when_made_so_memory_does_not_creep_as_it_fills() -> None:
    before = resident_bytes()
    ring = RingSeries(("a", "b", "c"), capacity=2_000_000)  # 80 MB: far above what else this test allocates
    made = resident_bytes() - before
    size = ring._t.nbytes + ring._v.nbytes
    assert made >= 0.9 * size  # written through at creation (np.empty pages arrive only when written)
    for i in range(100_000):
        ring.append(float(i), (i, i, i))
    assert resident_bytes() - before < made + 0.05 * size
    assert ring.nbytes == size
