"""SlotTask's own rules, without a worker: backoff with jitter, and plain errors for a missing setting."""

from __future__ import annotations

import pytest
from celery import Celery

from embedded_service.integrations.celery import SlotTask, backoff_s


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
