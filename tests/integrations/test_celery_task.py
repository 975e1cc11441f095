"""SlotTask's own rules, without a worker: backoff with jitter, plain errors for a missing setting,
and one BlockingClusterSlots per process (a forked child never reuses its parent's)."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from celery import Celery

from embedded_service.errors import SlotDeckError
from embedded_service.integrations.celery import SlotTask, backoff_s, close_worker_slots, worker_slots


def test_backoff_doubles_up_to_its_cap_with_half_of_it_random() -> None:
    for retries, cap in ((0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (500, 60.0)):
        waits = [backoff_s(retries, 1.0, 60.0) for _ in range(200)]
        assert all(cap / 2 <= w <= cap for w in waits)
        assert len(set(waits)) > 100  # jittered: retried tasks do not come back in step


def test_a_task_without_a_queue_or_url_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLOTDECK_STORE", raising=False)
    app = Celery("t", broker="memory://")

    @app.task(base=SlotTask, bind=True)
    def no_queue(self: SlotTask) -> None: ...

    @app.task(base=SlotTask, bind=True, slot_queue="llm")
    def no_url(self: SlotTask) -> None: ...

    with pytest.raises(ValueError, match="slot_queue="):
        no_queue()
    with pytest.raises(ValueError, match="slotdeck_url"):
        no_url()
    with pytest.raises(RuntimeError, match="only set inside the task body"):
        _ = no_url.slot_lease


def _in_child(app: Celery, out: Any) -> None:
    slots = worker_slots(app)
    with slots.slot("q", timeout_s=10) as lease:
        out.send((slots.proc_id, lease.fence))
    close_worker_slots()


def test_each_process_gets_its_own_cluster_slots_even_after_fork(private_redis: Any) -> None:
    app = Celery("t", broker="memory://")
    app.conf.slotdeck_url = private_redis.url("fork")
    parent = worker_slots(app)
    child = None
    try:
        assert worker_slots(app) is parent  # one per process
        parent.configure_queue("q", limit=1)
        ctx = multiprocessing.get_context("fork")  # as Celery's prefork pool does
        theirs, ours = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_in_child, args=(app, ours), daemon=True)
        child.start()
        assert theirs.poll(30), "the forked child never got a slot"
        proc_id, fence = theirs.recv()
        child.join(30)
        assert child.exitcode == 0
        assert proc_id != parent.proc_id and fence >= 1
        assert parent.snapshot()["queues"]["q"]["totals"]["released"] == 1  # the child released its slot
    finally:
        if child is not None and child.is_alive():
            child.kill()
        close_worker_slots()


def test_retries_for_want_of_a_slot_are_bounded_then_the_task_fails_with_slot_timeout(private_redis: Any) -> None:
    app = Celery("t", broker="memory://")
    app.conf.slotdeck_url = private_redis.url("retries")

    @app.task(base=SlotTask, bind=True, slot_queue="none", slot_wait_s=0.05, slot_max_retries=3)
    def never_runs(self: SlotTask) -> str:
        return "ran"

    try:
        slots = worker_slots(app)
        slots.configure_queue("none", limit=0)
        result = never_runs.apply()  # eager: each retry runs at once, countdown aside
        # Celery rebuilds the exception from its message: SlotTimeout's own arguments do not survive.
        assert result.failed() and isinstance(result.result, SlotDeckError), result.result
        assert str(result.result).startswith("no slot in queue 'none' after waiting")
        assert slots.snapshot()["queues"]["none"]["totals"]["timed_out"] == 4  # the first try and 3 retries
    finally:
        close_worker_slots()
