"""A hypothesis state machine over the engine: random acquire, release, cancel, timeout,
set_limit, pause/resume and lease expiry, with the invariants checked after every step.

The event loop is driven by hand (one loop per example, a few `sleep(0)` turns
after each step) and time moves only through `ManualClock.advance`, so every
run is deterministic and replayable.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from embedded_service import QueueFull, SlotCancelled, SlotTimeout
from embedded_service.engine import Lease, ManualClock, SlotEngine

QUEUE = "q"


@dataclass
class Request:
    owner: str
    priority: int
    arrival: int
    timeout_s: float
    task: asyncio.Task[Lease]
    seen: bool = False  # its outcome has been checked


@dataclass
class Model:
    requests: dict[str, Request] = field(default_factory=dict)
    delivered: dict[str, str] = field(default_factory=dict)  # lease id -> owner it reached
    ended: set[str] = field(default_factory=set)  # lease ids released, expired or revoked
    granted_ids: set[str] = field(default_factory=set)
    bad_releases: int = 0
    acquires: int = 0
    holders_cancelled: int = 0  # the engine's `cancelled` counts these beside waiters


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        self.engine = SlotEngine(self.clock)
        self.engine.configure_queue(QUEUE, limit=1, timeout_s=300)
        self.engine.listeners.append(self._on_event)
        self.model = Model()
        self.violations: list[str] = []

    # ----------------------------------------------------------- plumbing

    @property
    def state(self) -> Any:
        return self.engine.queues[QUEUE]

    def _settle(self) -> None:
        """Let every ready task run, then check what each finished request got."""
        for _ in range(4):
            self.loop.run_until_complete(asyncio.sleep(0))
        self._collect_outcomes()

    def _on_event(self, event: str, fields: dict[str, Any]) -> None:
        """Checked at the instant of every grant, inside the engine call that makes it."""
        if event in ("released", "expired", "revoked"):
            self.model.ended.add(fields["lease"])
            return
        if event != "granted":
            return
        lease_id = fields["lease"]
        state = self.state
        if lease_id in self.model.granted_ids:
            self.violations.append(f"lease {lease_id} granted twice")
        self.model.granted_ids.add(lease_id)
        if state.config.paused:
            self.violations.append("grant while paused")
        if state.in_use > state.config.limit:
            self.violations.append(f"grant took in_use to {state.in_use} over limit {state.config.limit}")
        granted = self.model.requests[fields["owner"]]
        for waiter in self.engine.waiters.values():
            if waiter.future.done():
                continue  # its task was cancelled; it leaves the line when the engine meets it
            other = self.model.requests[waiter.owner]
            if (other.priority, other.arrival) < (granted.priority, granted.arrival):
                self.violations.append(f"{granted.owner} granted before {other.owner}, who is ahead")

    def _pending(self) -> list[Request]:
        return [r for r in self.model.requests.values() if not r.task.done()]

    def _held(self) -> list[str]:
        return sorted(set(self.model.delivered) - self.model.ended)

    # -------------------------------------------------------------- rules

    @rule(
        priority=st.integers(0, 2),
        timeout_s=st.one_of(st.none(), st.sampled_from([0.5, 1.0, 3.0, 7.0])),
        ttl_s=st.one_of(st.none(), st.sampled_from([1.0, 2.5, 6.0])),
    )
    def acquire(self, priority: int, timeout_s: float | None, ttl_s: float | None) -> None:
        self._start(priority, timeout_s, ttl_s)
        self._settle()

    def _start(self, priority: int, timeout_s: float | None = None, ttl_s: float | None = None) -> None:
        arrival = self.model.acquires
        self.model.acquires += 1
        owner = f"r{arrival}"
        coro = self.engine.acquire(QUEUE, owner=owner, priority=priority, timeout_s=timeout_s, ttl_s=ttl_s)
        task = self.loop.create_task(coro)
        wait = timeout_s if timeout_s is not None else self.state.config.timeout_s
        self.model.requests[owner] = Request(owner, priority, arrival, wait, task)

    @precondition(lambda self: self._held())
    @rule(data=st.data(), reacquire=st.booleans())
    def release(self, data: st.DataObject, reacquire: bool) -> None:
        """Release a held lease; with `reacquire`, its holder asks again at once (it must not jump the line)."""
        lease_id = data.draw(st.sampled_from(self._held()))
        assert self.engine.release(lease_id) is True
        if reacquire:
            self._start(priority=self.model.requests[self.model.delivered[lease_id]].priority)
        self._settle()

    @precondition(lambda self: self.model.ended & set(self.model.delivered))
    @rule(data=st.data())
    def release_again(self, data: st.DataObject) -> None:
        """Double release, or release of an expired or revoked lease: refused and counted."""
        lease_id = data.draw(st.sampled_from(sorted(self.model.ended & set(self.model.delivered))))
        assert self.engine.release(lease_id) is False
        self.model.bad_releases += 1
        self._settle()

    @precondition(lambda self: self._held())
    @rule(data=st.data())
    def release_by_stranger(self, data: st.DataObject) -> None:
        lease_id = data.draw(st.sampled_from(self._held()))
        assert self.engine.release(lease_id, owner="stranger") is False
        self.model.bad_releases += 1
        self._settle()

    @precondition(lambda self: self._pending())
    @rule(data=st.data())
    def cancel_task(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(self._pending()))
        request.task.cancel()
        self._settle()

    @precondition(lambda self: self._held() and self._pending())
    @rule(data=st.data(), cancel_first=st.booleans())
    def release_and_cancel_in_one_tick(self, data: st.DataObject, cancel_first: bool) -> None:
        """The lost-wakeup shapes: a waiter's task cancelled just before or just after a release wakes it."""
        lease_id = data.draw(st.sampled_from(self._held()))
        request = data.draw(st.sampled_from(self._pending()))
        if cancel_first:
            request.task.cancel()
            self.engine.release(lease_id)
        else:
            self.engine.release(lease_id)
            request.task.cancel()
        self._settle()

    @precondition(lambda self: self.engine.waiters)
    @rule(data=st.data())
    def operator_cancels_waiter(self, data: st.DataObject) -> None:
        waiter_id = data.draw(st.sampled_from(sorted(self.engine.waiters)))
        assert self.engine.cancel(waiter_id) is True
        self._settle()

    @precondition(lambda self: self._held())
    @rule(data=st.data())
    def operator_cancels_holder(self, data: st.DataObject) -> None:
        lease_id = data.draw(st.sampled_from(self._held()))
        assert self.engine.cancel(lease_id) is True  # a bare acquire has no task hook: revoked
        self.model.holders_cancelled += 1
        self._settle()

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 2.5, 5.0]))
    def advance(self, seconds: float) -> None:
        """Time passes: waiters time out, leases with a TTL expire."""
        self.clock.advance(seconds)
        self._settle()

    @precondition(lambda self: self._held() and self._pending())
    @rule(data=st.data())
    def release_as_timer_fires(self, data: st.DataObject) -> None:
        """A release lands in the same instant as due timers, before any task runs."""
        lease_id = data.draw(st.sampled_from(self._held()))
        self.engine.release(lease_id)
        self.clock.advance(1.0)
        self._settle()

    @rule(limit=st.integers(0, 3))
    def set_limit(self, limit: int) -> None:
        self.engine.set_limit(QUEUE, limit)
        self._settle()

    @rule(max_waiting=st.one_of(st.none(), st.integers(0, 4)))
    def set_max_waiting(self, max_waiting: int | None) -> None:
        self.engine.configure_queue(QUEUE, max_waiting=max_waiting)
        self._settle()

    @rule(paused=st.booleans())
    def pause_or_resume(self, paused: bool) -> None:
        if paused:
            self.engine.pause(QUEUE)
        else:
            self.engine.resume(QUEUE)
        self._settle()

    # --------------------------------------------------------- invariants

    @invariant()
    def no_violation_at_grant_time(self) -> None:
        assert self.violations == []

    def _collect_outcomes(self) -> None:
        for request in self.model.requests.values():
            if request.seen or not request.task.done():
                continue
            request.seen = True
            if request.task.cancelled():
                continue
            error = request.task.exception()
            if error is None:
                lease = request.task.result()
                assert lease.id not in self.model.delivered, "one lease reached two callers"
                assert lease.owner == request.owner
                self.model.delivered[lease.id] = request.owner
            elif isinstance(error, SlotTimeout):
                assert error.waited_s == pytest.approx(request.timeout_s)
            else:
                assert isinstance(error, QueueFull | SlotCancelled), repr(error)

    @invariant()
    def no_slot_leaks(self) -> None:
        live = {lease_id for lease_id, lease in self.engine.leases.items() if lease.queue == QUEUE}
        held = set(self.model.delivered) - self.model.ended
        assert live == held, f"engine holds {sorted(live - held)} that no caller got"
        assert self.state.in_use == len(live)

    @invariant()
    def no_hung_waiter(self) -> None:
        state = self.state
        if not state.config.paused and state.in_use < state.config.limit:
            assert state.waiting == 0, "a waiter sits in line beside a free slot"

    @invariant()
    def counters_add_up(self) -> None:
        state = self.state
        live_waiters = [w for w in self.engine.waiters.values() if w.queue == QUEUE]
        assert state.waiting == len(live_waiters)
        assert state.granted == state.released + state.expired + state.revoked + state.in_use
        assert state.granted == len(self.model.granted_ids)
        waiters_cancelled = state.cancelled - self.model.holders_cancelled
        ended = state.granted + state.timed_out + waiters_cancelled + state.rejected
        assert self.model.acquires == ended + state.waiting
        assert state.bad_releases == self.model.bad_releases
        assert state.marks.in_use >= state.in_use and state.marks.waiting >= state.waiting

    def teardown(self) -> None:
        for request in self.model.requests.values():
            request.task.cancel()
        for _ in range(4):
            self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


EngineMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_engine_state_machine = EngineMachine.TestCase
