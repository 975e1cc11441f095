"""Per-queue live state: the line of waiters, counters, marks, samples, rate bucket."""

from __future__ import annotations

import asyncio
import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..model import Marks, QueueConfig, Totals
from .clock import TimerHandle

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
    instead of sorting every queue's whole window on every snapshot.
    """

    __slots__ = ("_mirror", "_seen", "sorted", "total")

    def __init__(self) -> None:
        self.sorted: list[float] = []
        self.total = 0.0  # sum of the samples (kept alongside; re-summed on every full rebuild)
        self._mirror: deque[float] = deque()
        self._seen = -1

    def update(self, samples: deque[float], appended: int) -> list[float]:
        """`appended`: how many samples were ever appended to `samples` (any monotonic count that grows by one
        per append). Returns the samples in order."""
        new = appended - self._seen
        if new == 0 and len(self._mirror) == len(samples):
            return self.sorted
        size = len(samples)
        if self._seen < 0 or new < 0 or new > max(16, size // 16) or len(self._mirror) + new < size:
            self.sorted = sorted(samples)
            self.total = math.fsum(self.sorted)
            self._mirror = deque(samples)
        else:
            fresh = [samples[-i] for i in range(new, 0, -1)] if new else []
            mirror, ordered = self._mirror, self.sorted
            total = self.total
            for value in fresh:
                mirror.append(value)
                bisect.insort(ordered, value)
                total += value
            while len(mirror) > size:
                gone = mirror.popleft()
                del ordered[bisect.bisect_left(ordered, gone)]
                total -= gone
            self.total = total
        self._seen = appended
        return self.sorted


    def mean(self, samples: deque[float]) -> float | None:
        """Mean of the samples as of the last `update` (None when it saw none or they changed size since)."""
        count = len(self.sorted)
        return self.total / count if count and count == len(samples) else None


def nearest_rank(ordered: list[float], q: float) -> float | None:
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
    marks: Marks = field(default_factory=Marks)
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

    def note_in_use(self, now: float) -> None:
        if self.in_use > self.marks.in_use:
            self.marks.in_use = self.in_use
            self.marks.in_use_at = now

    def note_waiting(self, now: float) -> None:
        depth = self.waiting + self.backlog
        if depth > self.marks.waiting:
            self.marks.waiting = depth
            self.marks.waiting_at = now

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
        return Totals(
            granted=self.granted,
            released=self.released,
            timed_out=self.timed_out,
            rejected=self.rejected,
            cancelled=self.cancelled,
            expired=self.expired,
            revoked=self.revoked,
            bad_releases=self.bad_releases,
            jobs_failed=self.jobs_failed,
            jobs_timed_out=self.jobs_timed_out,
        )

    def restore_totals(self, totals: Totals) -> None:
        for name in Totals.model_fields:
            setattr(self, name, getattr(totals, name))
        # the mirrors count appends by these totals: a jump with no sample appended is not "new samples"
        self.wait_sorted = SortedMirror()
        self.hold_sorted = SortedMirror()

    def sample_percentiles(self) -> tuple[float | None, float | None, float | None, float | None]:
        """(wait p50, wait p95, hold p50, hold p95) of the recent samples."""
        waits = self.wait_sorted.update(self.wait_samples, self.granted)
        holds = self.hold_sorted.update(self.hold_samples, self.released + self.expired + self.revoked)
        return (
            nearest_rank(waits, 0.5),
            nearest_rank(waits, 0.95),
            nearest_rank(holds, 0.5),
            nearest_rank(holds, 0.95),
        )

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
