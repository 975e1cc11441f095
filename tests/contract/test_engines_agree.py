"""Hypothesis drives the in-process engine and ClusterSlots (private Redis) with the same operations
and finds no difference in what they report: holders (by fence order), waiters in grant order with
their priorities, in_use / waiting, limit, paused, high-water marks, totals, and how each acquire
ended (granted, SlotTimeout, QueueFull, SlotCancelled, cancelled task) or that it still waits; renew,
revoke and cancel answer the same.

Deterministic: ``derandomize=True`` and no example database; bounded: 100 examples of up to 40 steps
(about 5-15 s on a loaded 2-core machine). Time moves only through the ``advance`` rule (60 s a
step; timeouts 130 s and TTLs 170 s never fall on a step boundary).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from engines import Held, MemoryEngine, RedisEngine
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from redisproc import PrivateRedis

from embedded_service.errors import LeaseGone

QUEUES = ("q", "r")
queues = st.sampled_from(QUEUES)
limits = st.integers(min_value=0, max_value=3)
max_waitings = st.one_of(st.none(), st.integers(min_value=0, max_value=3))
rates = st.sampled_from([None, 0.01])


def kind(exc: BaseException) -> str:
    """An error's name as the engines share it (ClusterSlots' LeaseLost is a LeaseGone)."""
    return "LeaseGone" if isinstance(exc, LeaseGone) else type(exc).__name__


def outcome(task: asyncio.Task[Held]) -> str:
    if not task.done():
        return "waiting"
    if task.cancelled():
        return "cancelled task"
    exc = task.exception()
    return "granted" if exc is None else kind(exc)


class EnginesAgree(RuleBasedStateMachine):
    url_for: Callable[[str], str]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engines: list[MemoryEngine | RedisEngine] = [
            MemoryEngine(),
            RedisEngine(type(self).url_for("s" + uuid.uuid4().hex[:10])),
        ]
        for engine in self.engines:
            self.run(engine.open())
        self.count = 0
        self.tasks: dict[str, list[asyncio.Task[Held]]] = {}
        self.released: set[str] = set()

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def both(self, op: Callable[[MemoryEngine | RedisEngine, int], Awaitable[Any]]) -> None:
        """Apply one operation to each engine; they must answer the same (a value or an error type)."""
        answers = []
        for i, engine in enumerate(self.engines):
            try:
                answers.append(("ok", self.run(op(engine, i))))
            except Exception as exc:  # compared below
                answers.append(("error", kind(exc)))
            self.run(engine.settle())
        assert answers[0] == answers[1], answers

    def teardown(self) -> None:
        for engine in self.engines:
            with contextlib.suppress(Exception):
                self.run(engine.close())
        self.loop.close()

    # ---- operations -----------------------------------------------------------------------

    @initialize(limit_q=limits, limit_r=limits, rate=rates)
    def create(self, limit_q: int, limit_r: int, rate: float | None) -> None:
        for name, limit, r in (("q", limit_q, rate), ("r", limit_r, None)):
            self.both(lambda e, i, name=name, limit=limit, r=r: e.configure(name, limit=limit, rate=r))

    @rule(queue=queues, limit=limits, max_waiting=max_waitings, rate=rates, burst=st.integers(1, 2))
    def configure(self, queue: str, limit: int, max_waiting: int | None, rate: float | None, burst: int) -> None:
        self.both(lambda e, i: e.configure(queue, limit=limit, max_waiting=max_waiting, rate=rate, burst=burst))

    @rule(
        queue=queues,
        priority=st.integers(0, 2),
        timeout_s=st.sampled_from([None, 130.0]),
        ttl_s=st.sampled_from([None, 170.0]),
    )
    def acquire(self, queue: str, priority: int, timeout_s: float | None, ttl_s: float | None) -> None:
        self.count += 1
        owner = f"o{self.count}"
        self.tasks[owner] = [
            self.run(e.start(queue, owner=owner, priority=priority, timeout_s=timeout_s, ttl_s=ttl_s))
            for e in self.engines
        ]

    def _granted(self) -> list[str]:
        return sorted(o for o, ts in self.tasks.items() if outcome(ts[0]) == "granted" and o not in self.released)

    def _waiting(self) -> list[str]:
        return sorted(o for o, ts in self.tasks.items() if outcome(ts[0]) == "waiting")

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        granted = self._granted()
        if granted:
            owner = data.draw(st.sampled_from(granted))
            self.released.add(owner)
            self.both(lambda e, i: e.release(self.tasks[owner][i].result()))

    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        granted = self._granted()
        if granted:
            owner = data.draw(st.sampled_from(granted))
            self.both(lambda e, i: e.renew(self.tasks[owner][i].result()))

    @rule(queue=queues, limit=limits)
    def set_limit(self, queue: str, limit: int) -> None:
        self.both(lambda e, i: e.set_limit(queue, limit))

    @rule(queue=queues)
    def pause(self, queue: str) -> None:
        self.both(lambda e, i: e.pause(queue))

    @rule(queue=queues)
    def resume(self, queue: str) -> None:
        self.both(lambda e, i: e.resume(queue))

    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        granted = self._granted()
        if granted:
            owner = data.draw(st.sampled_from(granted))
            self.both(lambda e, i: e.revoke(self.tasks[owner][i].result().id))

    @rule(data=st.data(), queue=queues)
    def cancel(self, data: st.DataObject, queue: str) -> None:
        """An operator's cancel of a waiter or a holder, by the id its engine reports."""
        views = [self.run(e.view(queue)) for e in self.engines]
        owners = sorted({*views[0].waiter_ids, *views[0].holder_ids})
        if owners:
            owner = data.draw(st.sampled_from(owners))
            self.both(lambda e, i: e.cancel(views[i].waiter_ids.get(owner) or views[i].holder_ids[owner]))

    @rule(data=st.data())
    def cancel_task(self, data: st.DataObject) -> None:
        waiting = self._waiting()
        if waiting:
            owner = data.draw(st.sampled_from(waiting))
            for i, engine in enumerate(self.engines):
                self.tasks[owner][i].cancel()
                self.run(engine.settle())

    @rule()
    def advance(self) -> None:
        for engine in self.engines:
            self.run(engine.advance(60))

    # ---- what must agree ------------------------------------------------------------------------

    @invariant()
    def agree(self) -> None:
        for engine in self.engines:
            self.run(engine.settle())
        for queue in QUEUES:
            mem, red = (self.run(e.view(queue)).same() for e in self.engines)
            assert mem == red, f"queue {queue}: memory {mem} != redis {red}"
        ends = {o: (outcome(ts[0]), outcome(ts[1])) for o, ts in self.tasks.items()}
        assert all(a == b for a, b in ends.values()), ends


@pytest.mark.timeout(600)
def test_in_process_and_redis_engines_agree(tmp_path: pytest.TempPathFactory) -> None:
    server = PrivateRedis(tmp_path)  # type: ignore[arg-type]
    server.start()
    try:
        EnginesAgree.url_for = server.url
        run_state_machine_as_test(
            EnginesAgree,
            settings=settings(
                max_examples=100,
                stateful_step_count=40,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        server.stop()
