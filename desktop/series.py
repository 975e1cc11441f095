"""Fixed-size numpy ring buffers that hold the dashboard's time series.

Graphs redraw up to ten times a second from these, so a read must be cheap: a
window of the newest points is one slice of the ring's arrays (no copy), or, while
it spans the arrays' end, the two pieces joined (one copy of the window, done by
numpy; a 5-minute window at 10 Hz spans the end 5 minutes in each hour).

Memory is fixed by design and paid when a ring is made: its arrays are allocated
full size and written through (NaN), so resident memory does not creep up as
points arrive, and nothing grows afterwards. Values are float32 (counts, MiB and
percentages are exact or far finer than a pixel), time stamps float64 (epoch
seconds need it): 8 B of time plus 4 B per column per point.

Budget per ring (capacity x (8 + 4 x columns) B):

- in focus, one hour at 10 Hz (`FOCUS_CAPACITY` 36,000 points): a queue 1.01 MB,
  a GPU 0.86 MB, the host 0.72 MB; the demo's 10 queues, 8 GPUs and host 17.7 MB
  (16.9 MiB) per connection;
- out of focus, one hour at the 1 snapshot/s such a connection receives
  (`BACKGROUND_CAPACITY` 3,600 points): a tenth of that, 1.8 MB per connection.

So ten such connections hold 17.7 + 9 x 1.8 = 34 MB of graphs (it was ~60 MB each:
float64, every point mirrored for a copy-free read, filled lazily). A connection
moving out of focus keeps its newest point of each second (`SeriesBook.set_focus`);
moving into focus keeps all it has.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np

from embedded_service.model import History, Snapshot

log = logging.getLogger(__name__)

FOCUS_CAPACITY = 36_000  # one hour at 10 Hz: the connection in focus gets 10 snapshots a second
BACKGROUND_CAPACITY = 3_600  # one hour at 1 Hz: one out of focus gets one a second (connection.BACKGROUND_SNAPSHOT_S)
BACKGROUND_STEP_S = 1.0  # out of focus, at most one point per this many seconds is kept when a ring shrinks
VALUE_DTYPE = np.float32

QUEUE_COLUMNS = ("in_use", "limit", "waiting", "waiting_hwm", "paused")
DEVICE_COLUMNS = ("memory_used_mib", "memory_reserved_mib", "memory_total_mib", "utilization_pct")
HOST_COLUMNS = ("cpu_pct", "memory_used_mib", "memory_total_mib")
HOST_KEY = "host"


def queue_key(name: str) -> str:
    return f"queue:{name}"


def device_key(index: int | str) -> str:
    return f"gpu:{index}"


def _columns_for(key: str) -> tuple[str, ...]:
    if key.startswith("queue:"):
        return QUEUE_COLUMNS
    if key.startswith("gpu:"):
        return DEVICE_COLUMNS
    if key == HOST_KEY:
        return HOST_COLUMNS
    raise KeyError(f"no series layout for {key!r}")


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


class RingSeries:
    """Float64 time stamps plus named float32 columns (NaN where missing), newest `capacity` points kept.

    Time stamps are kept strictly increasing, so a window is found by binary search. All memory
    (`nbytes`) is allocated and touched here; appending and backfilling never allocate ring memory.
    """

    def __init__(self, columns: Sequence[str], capacity: int = FOCUS_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.columns = tuple(columns)
        self.capacity = capacity
        self._t = np.full(capacity, np.nan, dtype=np.float64)  # written through: resident from the start
        self._v = np.full((len(self.columns), capacity), np.nan, dtype=VALUE_DTYPE)
        self._next = 0  # slot the next point goes to, in [0, capacity)
        self._len = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the ring's arrays: capacity x (8 + 4 x columns), fixed at creation."""
        return self._t.nbytes + self._v.nbytes

    def __len__(self) -> int:
        return self._len

    def column(self, name: str) -> int:
        """Row index of a named column in the `values` that `view` returns."""
        return self.columns.index(name)

    @property
    def last_t(self) -> float | None:
        return float(self._t[self._next - 1]) if self._len else None

    def append(self, t: float, values: Sequence[float | None]) -> None:
        """Add one point; a point at the newest time replaces it, an older one is dropped."""
        row = np.asarray(values, dtype=VALUE_DTYPE)
        last = self.last_t
        if last is not None and t <= last:
            if t == last:
                self._write(self._next - 1, t, row)
            else:
                log.debug("dropped a point at %.3f older than the newest %.3f", t, last)
            return
        self._write(self._next, t, row)
        self._next = (self._next + 1) % self.capacity
        self._len = min(self._len + 1, self.capacity)

    def _write(self, slot: int, t: float, row: np.ndarray) -> None:
        slot %= self.capacity
        self._t[slot] = t
        self._v[:, slot] = row

    def extend(self, ts: Sequence[float] | np.ndarray, rows: Sequence[Sequence[float | None]] | np.ndarray) -> int:
        """Merge a backfill: points older than the oldest or newer than the newest held are taken,
        points inside the held span are ignored (live points win), so nothing is duplicated.

        `rows` has one row per time stamp and one column per series column. Returns how many were merged
        (the oldest points then fall off a ring that is over capacity).
        """
        t_new = np.asarray(ts, dtype=np.float64).reshape(-1)
        v_new = np.asarray(rows, dtype=VALUE_DTYPE).reshape(len(t_new), len(self.columns))
        t_new, first = np.unique(t_new, return_index=True)  # sorted, one point per time stamp
        v_new = v_new[first]
        t_old, v_old = self.view()
        if len(t_old):
            before = t_new < t_old[0]
            after = t_new > t_old[-1]
            t_all = np.concatenate((t_new[before], t_old, t_new[after]))
            v_all = np.concatenate((v_new[before].T, v_old, v_new[after].T), axis=1)
            taken = int(before.sum() + after.sum())
        else:
            t_all, v_all, taken = t_new, v_new.T, len(t_new)
        self._load(t_all[-self.capacity :], v_all[:, -self.capacity :])
        return taken

    def _load(self, t: np.ndarray, v: np.ndarray) -> None:
        n = len(t)
        self._t[:n] = t
        self._v[:, :n] = v
        self._next = n % self.capacity
        self._len = n

    def view(self, since_t: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read-only arrays `(t, values)` of the points at or after `since_t` (all when None), oldest first.

        `values` has shape (columns, n): each column is one contiguous row, ready for plotting.
        They share memory with the ring and stay as they are for `capacity - n` more points
        (a graph redraws long before); n == capacity, which the next point would overwrite, and a window
        across the arrays' end are copies.
        """
        n, cap = self._len, self.capacity
        start = (self._next - n) % cap  # the oldest point's slot
        first = min(n, cap - start)  # points from `start` to the arrays' end; the rest from slot 0
        skip = 0
        if since_t is not None and n:
            if n > first and since_t > self._t[start + first - 1]:
                skip = first + int(np.searchsorted(self._t[: n - first], since_t, side="left"))
            else:
                skip = int(np.searchsorted(self._t[start : start + first], since_t, side="left"))
        if skip >= first:  # all in the piece from slot 0 (or none)
            lo, hi = skip - first, n - first
            t, v = self._t[lo:hi], self._v[:, lo:hi]
        elif n == first:  # one piece
            t, v = self._t[start + skip : start + n], self._v[:, start + skip : start + n]
        else:  # spans the arrays' end: join the two pieces (a copy)
            t = np.concatenate((self._t[start + skip :], self._t[: n - first]))
            v = np.concatenate((self._v[:, start + skip :], self._v[:, : n - first]), axis=1)
        if len(t) == cap and n == first:
            t, v = t.copy(), v.copy()
        return _read_only(t), _read_only(v)

    def clear(self) -> None:
        self._next = 0
        self._len = 0

    def resized(self, capacity: int, min_step_s: float = 0.0) -> RingSeries:
        """A new ring of `capacity` holding this one's newest points, thinned first to the newest point of
        each `min_step_s` bucket of time (0: all points)."""
        ring = RingSeries(self.columns, capacity)
        t, v = self.view()
        if min_step_s > 0 and len(t):
            bucket = np.floor(t / min_step_s)
            last_of_bucket = np.append(bucket[1:] != bucket[:-1], True)
            t, v = t[last_of_bucket], v[:, last_of_bucket]
        ring._load(t[-capacity:], v[:, -capacity:])
        return ring


class SeriesBook:
    """The rings of one connection, keyed "queue:<name>", "gpu:<index>" and "host", created on first use.

    In focus each ring holds `capacity` points (an hour at 10 Hz), out of focus `background_capacity`
    (an hour at 1 Hz); see the module docstring for the bytes.
    """

    def __init__(self, capacity: int = FOCUS_CAPACITY, background_capacity: int = BACKGROUND_CAPACITY) -> None:
        self.focus_capacity = capacity
        self.background_capacity = background_capacity
        self.in_focus = True
        self._rings: dict[str, RingSeries] = {}

    @property
    def capacity(self) -> int:
        """Points per ring now: `focus_capacity` in focus, else `background_capacity`."""
        return self.focus_capacity if self.in_focus else self.background_capacity

    @property
    def nbytes(self) -> int:
        """Bytes held by all rings (each fixed when it was made)."""
        return sum(ring.nbytes for ring in self._rings.values())

    def set_focus(self, in_focus: bool) -> None:
        """Move every ring to the capacity for in focus or not: out of focus, thinned to the newest point of
        each second (what such a connection receives); into focus, every point kept and new ones at full rate."""
        if in_focus == self.in_focus:
            return
        self.in_focus = in_focus
        step = 0.0 if in_focus else BACKGROUND_STEP_S
        self._rings = {key: ring.resized(self.capacity, step) for key, ring in self._rings.items()}

    def __contains__(self, key: str) -> bool:
        return key in self._rings

    def __iter__(self) -> Iterator[str]:
        return iter(self._rings)

    def get(self, key: str) -> RingSeries | None:
        return self._rings.get(key)

    def ring(self, key: str) -> RingSeries:
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = RingSeries(_columns_for(key), self.capacity)
        return ring

    def discard(self, key: str) -> None:
        self._rings.pop(key, None)

    @property
    def last_t(self) -> float | None:
        """Newest time stamp held by any ring."""
        times = [t for ring in self._rings.values() if (t := ring.last_t) is not None]
        return max(times, default=None)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """One point per queue, device and the host, at `snap.at`."""
        for q in snap.queues:
            self.ring(queue_key(q.config.name)).append(
                snap.at, (q.in_use, q.config.limit, q.waiting, q.marks.waiting, float(q.config.paused))
            )
        for d in snap.devices:
            self.ring(device_key(d.index)).append(
                snap.at, (d.memory_used_mib, d.memory_reserved_mib, d.memory_total_mib, d.utilization_pct)
            )
        host = snap.host
        row = (None, None, None) if host is None else (host.cpu_pct, host.memory_used_mib, host.memory_total_mib)
        self.ring(HOST_KEY).append(snap.at, row)

    def backfill(self, history: History) -> None:
        """Fill from /v1/history. Figures it lacks (waiting high-water mark, memory totals) stay NaN."""
        t = np.asarray(history.t, dtype=np.float64)
        if not len(t):
            return
        n = len(t)
        missing = np.full(n, np.nan)
        for name, qs in history.queues.items():
            cols = (_fit(qs.in_use, n), _fit(qs.limit, n), _fit(qs.waiting, n), missing, missing)
            self.ring(queue_key(name)).extend(t, np.column_stack(cols))
        for index, ds in history.devices.items():
            device = (_fit(ds.memory_used_mib, n), _fit(ds.memory_reserved_mib, n), missing, _fit(ds.utilization_pct, n))
            self.ring(device_key(index)).extend(t, np.column_stack(device))
        host = (_fit(history.host_cpu_pct, n), _fit(history.host_memory_used_mib, n), missing)
        self.ring(HOST_KEY).extend(t, np.column_stack(host))


def _fit(values: Sequence[float | None], n: int) -> np.ndarray:
    """A history list as float64 of length n (None -> NaN; a short or absent list is NaN-padded)."""
    out = np.full(n, np.nan)
    a = np.asarray(values[:n], dtype=np.float64)
    out[: len(a)] = a
    return out
