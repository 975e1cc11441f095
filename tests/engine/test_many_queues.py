"""Many queues: an idle tick saves nothing and claims nothing, and history only grows with change."""

from __future__ import annotations

from pathlib import Path

from embedded_service import SlotService
from embedded_service.engine import HistoryRing, Sample


async def test_an_idle_tick_saves_no_unchanged_queue(tmp_path: Path) -> None:
    svc = SlotService(store=f"sqlite:///{tmp_path}/many.db", sample_interval_s=3600)
    for i in range(2000):
        svc.configure_queue(f"q{i}", limit=2)
    async with svc:
        await svc.save_queue_state()
        await svc.save_queue_state()
        assert svc.keeper.last_saved_queues == 0  # nothing changed since the first save
        async with svc.slot("q1234"):
            pass
        await svc.save_queue_state()
        assert svc.keeper.last_saved_queues == 1  # only the queue that changed (its totals reserved ahead)
        await svc.save_queue_state()
        assert svc.keeper.last_saved_queues == 1  # quiet for a tick: its exact totals, once
        await svc.save_queue_state()
        assert svc.keeper.last_saved_queues == 0
        granted = svc.engine.queues["q1234"].granted
    async with SlotService(store=f"sqlite:///{tmp_path}/many.db") as again:
        assert again.engine.queues["q1234"].granted == granted == 1


def sample(t: float, queues: dict[str, tuple[int, int, int]]) -> Sample:
    return Sample(t=t, queues=queues, devices={}, host_cpu_pct=None, host_memory_used_mib=None)


def test_idle_queues_add_nothing_to_history_and_the_budget_bounds_it() -> None:
    ring = HistoryRing(points=100, budget=500)
    idle = {f"idle{i}": (0, 0, 1) for i in range(1000)}
    for t in range(50):
        ring.add(sample(float(t), {**idle, "busy": (t % 3, t % 5, 4)}))
    # the first point holds every queue once; after that only "busy" changes
    assert ring.entries <= 500
    history = ring.series(seconds=1000, now=49.0)
    assert history.queues["busy"].in_use == [t % 3 for t in range(50 - len(history.t), 50)]
    assert history.queues["idle7"].limit == [1] * len(history.t)  # kept through the base as old points went
    assert len(history.t) < 50  # the budget dropped the oldest points rather than grow
    small = HistoryRing(points=100, budget=10_000)
    for t in range(100):
        small.add(sample(float(t), idle))
    assert small.entries == 1000  # 100 idle points cost what one point costs
    assert small.series(seconds=10, now=99.0).queues["idle0"].in_use == [0] * 11


async def test_reads_store_nothing_while_totals_stay_under_their_reservation(tmp_path: Path) -> None:
    """A read shows live totals without a commit while they are under the ceilings stored at the last tick; a
    burst past them is stored before it is shown; stored totals are never below what was shown; a clean close
    stores the exact figures."""
    url = f"sqlite:///{tmp_path}/reads.db"

    async def churn(svc: SlotService, times: int) -> None:
        for _ in range(times):
            async with svc.slot("q"):
                pass

    async def stored_granted(svc: SlotService) -> int:
        return (await svc.store.load_queue_state())["q"][1].granted

    svc = SlotService(store=url, sample_interval_s=3600)
    svc.configure_queue("q", limit=1)
    async with svc:
        await churn(svc, 10)
        await svc.save_queue_state()  # a tick: the counters that moved are stored ahead of their values
        await churn(svc, 5)
        commits = svc.store.commits
        await svc.keeper.sync_shown()
        assert svc.store.commits == commits  # the read cost no write
        assert await stored_granted(svc) >= svc.engine.queues["q"].granted == 15
        await churn(svc, 200)  # far past the reservation
        await svc.keeper.sync_shown()
        assert svc.store.commits == commits + 1  # stored before shown
        assert await stored_granted(svc) >= svc.engine.queues["q"].granted == 215
    async with SlotService(store=url) as again:
        assert again.engine.queues["q"].granted == 215  # a clean stop stores the exact figures
