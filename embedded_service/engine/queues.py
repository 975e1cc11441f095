"""Per-queue live state: the line of waiters, counters, marks, samples, rate bucket."""

from __future__ import annotations

import asyncio
import bisect
import math
from array import array
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..model import Marks, QueueConfig, Totals, WaiterInfo, trusted
from .clock import TimerHandle

if TYPE_CHECKING:
    from .core import Lease

SAMPLE_WINDOW = 1024  # wait/hold samples kept per queue for percentiles and estimates
# Epoch seconds as floats are exact only to ~0.24 us, so a timer can fire a hair
# early: a deadline or an admission due within this much time counts as due, and
# no timer is armed shorter (else it could re-arm at the same instant forever).
TIMER_SLACK_S = 1e-6


@dataclass(eq=False, slots=True)
class Waiter:
    """One pending acquire. Ordered by (priority, seq): lower priority number first, then arrival."""

    id: str
    queue: str
    owner: str | None
    priority: int
    seq: int
    gpus: int
    gpu_mem_mib: int
    enqueued_at: float
    deadline: float | None
    ttl_s: float | None
    job_id: str | None
    future: asyncio.Future[Any]
    poll_timer: TimerHandle | None = None
    done: bool = False

    def __lt__(self, other: Waiter) -> bool:
        if self.priority != other.priority:
            return self.priority < other.priority
        return self.seq < other.seq

    def info(self, position: int) -> WaiterInfo:
        """Its public view; `position` in its line from 1 (0: not computed)."""
        return WaiterInfo(
            id=self.id,
            queue=self.queue,
            owner=self.owner,
            priority=self.priority,
            gpus=self.gpus,
            gpu_mem_mib=self.gpu_mem_mib,
            enqueued_at=self.enqueued_at,
            deadline=self.deadline,
            position=position,
            job_id=self.job_id,
        )


class TokenBucket:
    """Admissions per second with a burst, kept as a GCRA (a token bucket's exact twin).

    It tracks the theoretical arrival time of the next admission, which moves by
    exactly 1/rate per admission; unlike refilling a float token count from
    clock differences, rounding errors never accumulate into a drifting rate.
    """

    __slots__ = ("interval", "tat", "tolerance")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.interval = 1.0 / rate
        self.tolerance = (burst - 1) * self.interval  # how far ahead of schedule a burst may run
        self.tat = now

    def available(self, now: float) -> bool:
        return self.tat - self.tolerance <= now + TIMER_SLACK_S

    def take(self, now: float) -> None:
        self.tat = max(self.tat, now) + self.interval

    def delay_until_token(self, now: float) -> float:
        return max(TIMER_SLACK_S, self.tat - self.tolerance - now)


class SortedMirror:
    """A sorted copy of a sample deque, brought up to date from how many samples were appended since.

    The engine appends to the deque on its hot path and counts appends anyway (grants, ended leases);
    a snapshot then pays for the samples that are new (a bisect-insert and a bisect-delete each)
    instead of sorting every queue's whole window on every snapshot. The sorted copy is an `array('d')`:
    its values lie side by side, where a list's bisection reads floats scattered over the heap (with
    1,000 busy queues that was half the cost of a snapshot, in cache misses).
    """

    __slots__ = ("_mirror", "_ranks", "_seen", "p50", "p95", "sorted", "total")

    def __init__(self) -> None:
        self.sorted: array[float] = array("d")
        self.p50: float | None = None  # nearest-rank percentiles of `sorted`, as of the last update
        self.p95: float | None = None
        self.total = 0.0  # sum of the samples (kept alongside; re-summed on every full rebuild)
        self._mirror: deque[float] = deque()
        self._seen = -1
        self._ranks = (0, 0)  # indexes of p50 and p95 in `sorted` at its size (set with the percentiles)

    def update(self, samples: deque[float], appended: int) -> array[float]:
        """`appended`: how many samples were ever appended to `samples` (any monotonic count that grows by one
        per append; a jump of the count, such as totals restored from the store, only costs a rebuild).
        Returns the samples in order."""
        new = appended - self._seen
        mirror = self._mirror
        size = len(samples)
        if new == 0 and len(mirror) == size:
            return self.sorted
        if new == 1 and len(mirror) == size > 0:  # the common case of a busy queue: one in, one out
            value, gone = samples[-1], mirror.popleft()
            mirror.append(value)
            ordered = self.sorted
            del ordered[bisect_left(ordered, gone)]
            insort(ordered, value)
            self.total += value - gone
            self._seen = appended
            i50, i95 = self._ranks  # the size did not change
            self.p50, self.p95 = ordered[i50], ordered[i95]
            return ordered
        # rebuilt also when the count moved past what `samples` holds (totals restored at start, after a read)
        if self._seen < 0 or new < 0 or new > min(size, max(16, size // 16)) or len(self._mirror) + new < size:
            fresh = sorted(samples)
            self.sorted = ordered = array("d", fresh)
            self.total = math.fsum(fresh)
            self._mirror = deque(samples)
        else:
            mirror, ordered = self._mirror, self.sorted
            total = self.total
            for i in range(new, 0, -1):
                value = samples[-i]
                mirror.append(value)
                insort(ordered, value)
                total += value
            while len(mirror) > size:
                gone = mirror.popleft()
                del ordered[bisect_left(ordered, gone)]
                total -= gone
            self.total = total
        self._seen = appended
        ordered = self.sorted
        count = len(ordered)
        self._ranks = (max(1, math.ceil(0.5 * count)) - 1, max(1, math.ceil(0.95 * count)) - 1)
        self.p50, self.p95 = nearest_rank(ordered, 0.5), nearest_rank(ordered, 0.95)
        return ordered

    def mean(self, samples: deque[float]) -> float | None:
        """Mean of the samples as of the last `update` (None when it saw none or they changed size since)."""
        count = len(self.sorted)
        return self.total / count if count and count == len(samples) else None


def nearest_rank(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of samples already in order (None when there are none)."""
    if not ordered:
        return None
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def percentile(samples: deque[float], q: float) -> float | None:
    """Nearest-rank percentile of the recent samples (None when there are none)."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(eq=False)
class QueueState:
    """Everything the engine tracks for one queue. Mutated only on the loop."""

    config: QueueConfig
    # The line: one FIFO lane per priority in use, lanes in priority order. Pushing
    # and taking the head are O(1) (few priorities are ever in use at once), where a
    # heap pays log(n) compares and a key tuple on every wait.
    lanes: dict[int, deque[Waiter]] = field(default_factory=dict)
    priorities: list[int] = field(default_factory=list)
    waiting: int = 0
    in_use: int = 0
    bucket: TokenBucket | None = None
    rate_timer: TimerHandle | None = None
    # High-water marks as plain numbers (raised on the hot path, e.g. on every submit to a growing queue);
    # `marks` builds the model from them when read.
    mark_in_use: int = 0
    mark_in_use_at: float | None = None
    mark_waiting: int = 0
    mark_waiting_at: float | None = None
    marks_reset_at: float | None = None
    _marks: Marks | None = field(default=None, repr=False)  # `marks` as last built; None once a mark moved
    granted: int = 0
    released: int = 0
    timed_out: int = 0
    rejected: int = 0
    cancelled: int = 0
    expired: int = 0
    revoked: int = 0
    bad_releases: int = 0
    jobs_failed: int = 0
    jobs_timed_out: int = 0
    held: dict[str, Lease] = field(default_factory=dict)  # this queue's leases (the engine's `leases`, by queue)
    # Durable jobs queued in the store but not in the line above (beyond the job runner's window);
    # set by the job runner. `waiting + backlog` is the queue's true depth.
    backlog: int = 0
    wait_samples: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLE_WINDOW))
    hold_samples: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLE_WINDOW))
    wait_sorted: SortedMirror = field(default_factory=SortedMirror)
    hold_sorted: SortedMirror = field(default_factory=SortedMirror)

    @property
    def name(self) -> str:
        return self.config.name

    def head(self) -> Waiter | None:
        """The next waiter in order, dropping entries that already left and emptied lanes."""
        priorities = self.priorities
        while priorities:
            lane = self.lanes[priorities[0]]
            while lane:
                if not lane[0].done:
                    return lane[0]
                lane.popleft()
            del self.lanes[priorities.pop(0)]
        return None

    def pop_head(self) -> None:
        """Take out the waiter `head()` just returned."""
        self.lanes[self.priorities[0]].popleft()
        self.waiting -= 1

    def push(self, waiter: Waiter) -> None:
        lane = self.lanes.get(waiter.priority)
        if lane is None:
            self.lanes[waiter.priority] = deque((waiter,))
            bisect.insort(self.priorities, waiter.priority)
        else:
            lane.append(waiter)
        self.waiting += 1

    def forget(self, waiter: Waiter) -> None:
        """Mark a waiter as gone; its entry is dropped lazily (lanes compacted when mostly dead)."""
        waiter.done = True
        self.waiting -= 1
        if sum(len(lane) for lane in self.lanes.values()) > 2 * self.waiting + 64:
            for priority, lane in self.lanes.items():
                self.lanes[priority] = deque(w for w in lane if not w.done)

    def live_waiters(self) -> list[Waiter]:
        """Waiters in grant order (a copy; for snapshots, not the hot path)."""
        return [w for priority in self.priorities for w in self.lanes[priority] if not w.done]

    @property
    def marks(self) -> Marks:
        """The high-water marks as a model: the same object until a mark moves, so snapshots share it (never
        change it; assign a new one)."""
        marks = self._marks
        if marks is None:
            marks = self._marks = trusted(
                Marks,
                {
                    "in_use": self.mark_in_use,
                    "in_use_at": self.mark_in_use_at,
                    "waiting": self.mark_waiting,
                    "waiting_at": self.mark_waiting_at,
                    "reset_at": self.marks_reset_at,
                },
            )
        return marks

    @marks.setter
    def marks(self, marks: Marks) -> None:
        self.mark_in_use, self.mark_in_use_at = marks.in_use, marks.in_use_at
        self.mark_waiting, self.mark_waiting_at = marks.waiting, marks.waiting_at
        self.marks_reset_at = marks.reset_at
        self._marks = None

    def marks_key(self) -> tuple[object, ...]:
        """The marks as a tuple (to tell whether they moved without building the model)."""
        return (self.mark_in_use, self.mark_in_use_at, self.mark_waiting, self.mark_waiting_at, self.marks_reset_at)

    def note_in_use(self, now: float) -> None:
        if self.in_use > self.mark_in_use:
            self.mark_in_use, self.mark_in_use_at, self._marks = self.in_use, now, None

    def note_waiting(self, now: float) -> None:
        depth = self.waiting + self.backlog
        if depth > self.mark_waiting:
            self.mark_waiting, self.mark_waiting_at, self._marks = depth, now, None

    def reset_marks(self, now: float) -> None:
        self.marks = Marks(
            in_use=self.in_use,
            in_use_at=now,
            waiting=self.waiting + self.backlog,
            waiting_at=now,
            reset_at=now,
        )

    def apply_rate(self, now: float) -> None:
        """Rebuild the token bucket after `rate`/`burst` changed."""
        if self.config.rate is None:
            self.bucket = None
        else:
            self.bucket = TokenBucket(self.config.rate, self.config.burst, now)

    def totals(self) -> Totals:
        return trusted(
            Totals,
            {
                "granted": self.granted,
                "released": self.released,
                "timed_out": self.timed_out,
                "rejected": self.rejected,
                "cancelled": self.cancelled,
                "expired": self.expired,
                "revoked": self.revoked,
                "bad_releases": self.bad_releases,
                "jobs_failed": self.jobs_failed,
                "jobs_timed_out": self.jobs_timed_out,
            },
        )

    def restore_totals(self, totals: Totals) -> None:
        for name in Totals.model_fields:
            setattr(self, name, getattr(totals, name))
        # the mirrors count appends by these totals: a jump with no sample appended is not "new samples"
        self.wait_sorted = SortedMirror()
        self.hold_sorted = SortedMirror()

    def sample_percentiles(self) -> tuple[float | None, float | None, float | None, float | None]:
        """(wait p50, wait p95, hold p50, hold p95) of the recent samples."""
        waits, holds = self.wait_sorted, self.hold_sorted
        waits.update(self.wait_samples, self.granted)
        holds.update(self.hold_samples, self.released + self.expired + self.revoked)
        return waits.p50, waits.p95, holds.p50, holds.p95

    def est_wait_s(self, extra_ahead: int = 0, mean_hold: float | None = None) -> float | None:
        """Wait of a newcomer: position over throughput (limit / mean hold time)."""
        if self.config.paused:
            return None
        ahead = self.waiting + self.backlog + extra_ahead
        if ahead == 0 and self.in_use < self.config.limit:
            return 0.0
        if not self.hold_samples or self.config.limit == 0:
            return None
        if mean_hold is None:
            mean_hold = sum(self.hold_samples) / len(self.hold_samples)
        return (ahead + 1) * mean_hold / self.config.limit
