"""The engine contract: every behaviour below holds, with the same figures, on the in-process engine
and on ClusterSlots (Redis). Time moves only through ``engine.advance()`` (see engines.py)."""

from __future__ import annotations

import asyncio

import pytest
from engines import Engine, Held

from embedded_service.errors import LeaseGone, QueueFull, SlotCancelled, SlotTimeout, UnknownQueue


async def take(engine: Engine, queue: str, owner: str, **kw: object) -> Held:
    task = await engine.start(queue, owner=owner, **kw)  # type: ignore[arg-type]
    assert task.done(), f"{owner} was not granted at once"
    return task.result()


async def test_limit_caps_holders_and_a_release_admits_the_next(engine: Engine) -> None:
    await engine.configure("q", limit=2)
    a = await take(engine, "q", "a")
    b = await take(engine, "q", "b")
    c = await engine.start("q", owner="c")
    assert not c.done()
    v = await engine.view("q")
    assert (v.in_use, v.waiting, v.holders, v.waiters) == (2, 1, ["a", "b"], [("c", 0)])
    await engine.release(a)
    await engine.settle()
    assert c.done() and c.result().owner == "c"
    v = await engine.view("q")
    assert (v.in_use, v.waiting, v.holders) == (2, 0, ["b", "c"])
    await engine.release(b)
    await engine.release(c.result())
    await engine.release(c.result())  # a second release changes nothing
    v = await engine.view("q")
    assert v.in_use == 0 and v.totals["granted"] == 3 and v.totals["released"] == 3


async def test_unknown_queue(engine: Engine) -> None:
    with pytest.raises(UnknownQueue):
        (await engine.start("nope", owner="x")).result()


async def test_priority_then_fifo(engine: Engine) -> None:
    await engine.configure("q", limit=1)
    first = await take(engine, "q", "first")
    tasks = {}
    for owner, prio in [("a", 5), ("b", 5), ("c", 1), ("d", 5), ("e", 1)]:
        tasks[owner] = await engine.start("q", owner=owner, priority=prio)
    v = await engine.view("q")
    assert v.waiters == [("c", 1), ("e", 1), ("a", 5), ("b", 5), ("d", 5)]
    order = []
    held = first
    for _ in range(5):
        await engine.release(held)
        await engine.settle()
        done = [o for o, t in tasks.items() if t.done() and o not in order]
        assert len(done) == 1
        order.append(done[0])
        held = tasks[done[0]].result()
    assert order == ["c", "e", "a", "b", "d"]
    await engine.release(held)


async def test_timeout_raises_slot_timeout_and_counts(engine: Engine) -> None:
    await engine.configure("q", limit=1)
    held = await take(engine, "q", "h")
    late = await engine.start("q", owner="late", timeout_s=100)
    patient = await engine.start("q", owner="patient", timeout_s=500)
    await engine.advance(60)
    assert not late.done()
    await engine.advance(60)
    with pytest.raises(SlotTimeout):
        late.result()
    v = await engine.view("q")
    assert v.waiters == [("patient", 0)] and v.totals["timed_out"] == 1
    await engine.release(held)
    await engine.settle()
    assert patient.done() and patient.result().owner == "patient"
    await engine.release(patient.result())


async def test_max_waiting_refuses_with_queue_full(engine: Engine) -> None:
    await engine.configure("q", limit=1, max_waiting=1)
    held = await take(engine, "q", "h")
    w = await engine.start("q", owner="w")
    full = await engine.start("q", owner="x")
    with pytest.raises(QueueFull) as exc:
        full.result()
    assert exc.value.waiting == 1
    v = await engine.view("q")
    assert v.totals["rejected"] == 1 and v.waiters == [("w", 0)]
    await engine.release(held)
    await engine.settle()
    await engine.release(w.result())


async def test_pause_holds_everyone_resume_admits_in_order(engine: Engine) -> None:
    await engine.configure("q", limit=2)
    held = await take(engine, "q", "h")
    await engine.pause("q")
    a = await engine.start("q", owner="a")
    b = await engine.start("q", owner="b")
    v = await engine.view("q")
    assert v.paused and v.holders == ["h"] and v.waiters == [("a", 0), ("b", 0)]  # a free slot, nobody admitted
    await engine.resume("q")
    await engine.settle()
    assert a.done() and not b.done()
    v = await engine.view("q")
    assert not v.paused and v.holders == ["h", "a"]
    for h in (held, a.result()):
        await engine.release(h)
    await engine.settle()
    await engine.release(b.result())


async def test_raising_the_limit_admits_lowering_never_preempts(engine: Engine) -> None:
    await engine.configure("q", limit=1)
    a = await take(engine, "q", "a")
    waiters = [await engine.start("q", owner=o) for o in ("b", "c", "d")]
    await engine.set_limit("q", 3)
    await engine.settle()
    assert [t.done() for t in waiters] == [True, True, False]
    await engine.set_limit("q", 1)
    v = await engine.view("q")
    assert (v.limit, v.in_use, v.holders, v.waiters) == (1, 3, ["a", "b", "c"], [("d", 0)])
    await engine.release(a)
    await engine.release(waiters[0].result())
    await engine.settle()
    assert not waiters[2].done()  # still two holders against a limit of 1
    await engine.release(waiters[1].result())
    await engine.settle()
    assert waiters[2].done()
    v = await engine.view("q")
    assert v.marks == (3, 3)
    await engine.release(waiters[2].result())


async def test_lease_ttl_expires_unless_renewed(engine: Engine) -> None:
    await engine.configure("q", limit=1)
    lease = await take(engine, "q", "h", ttl_s=100)
    nxt = await engine.start("q", owner="n")
    await engine.advance(60)
    await engine.renew(lease)  # another 100 s from now
    await engine.advance(60)
    assert not nxt.done()
    await engine.advance(60)
    assert nxt.done() and nxt.result().fence > lease.fence
    with pytest.raises(LeaseGone):
        await engine.renew(lease)
    v = await engine.view("q")
    assert v.totals["expired"] == 1 and v.holders == ["n"]
    await engine.release(lease)  # releasing an expired lease frees nothing
    assert (await engine.view("q")).in_use == 1
    await engine.release(nxt.result())


async def test_revoke_gives_the_slot_to_the_next_and_the_holder_cannot_renew(engine: Engine) -> None:
    await engine.configure("q", limit=1)
    lease = await take(engine, "q", "h", ttl_s=1000)
    nxt = await engine.start("q", owner="n")
    assert await engine.revoke(lease.id)
    assert not await engine.revoke(lease.id)
    await engine.settle()
    assert nxt.done()
    with pytest.raises(LeaseGone):
        await engine.renew(lease)
    v = await engine.view("q")
    assert v.totals["revoked"] == 1 and v.holders == ["n"]
    await engine.release(nxt.result())


async def test_cancel_of_a_waiter_and_of_a_holder(engine: Engine) -> None:
    await engine.configure("q", limit=1)
    lease = await take(engine, "q", "h", ttl_s=1000)
    w1 = await engine.start("q", owner="w1")
    w2 = await engine.start("q", owner="w2")
    v = await engine.view("q")
    assert await engine.cancel(v.waiter_ids["w1"])
    await engine.settle()
    with pytest.raises(SlotCancelled):
        w1.result()
    assert await engine.cancel(v.holder_ids["h"])  # the holder's slot comes back now
    await engine.settle()
    assert w2.done()
    with pytest.raises(LeaseGone):
        await engine.renew(lease)
    assert not await engine.cancel("no-such-id")
    v = await engine.view("q")
    assert v.totals["cancelled"] == 2 and v.totals["revoked"] == 1 and v.holders == ["w2"]
    await engine.release(w2.result())


async def test_a_cancelled_acquire_task_leaves_the_line(engine: Engine) -> None:
    await engine.configure("q", limit=1)
    held = await take(engine, "q", "h")
    gone = await engine.start("q", owner="gone")
    stays = await engine.start("q", owner="stays")
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    await engine.settle()
    v = await engine.view("q")
    assert v.waiters == [("stays", 0)] and v.totals["cancelled"] == 1
    await engine.release(held)
    await engine.settle()
    assert stays.done()
    await engine.release(stays.result())


async def test_fences_strictly_increase_across_every_way_a_slot_ends(engine: Engine) -> None:
    await engine.configure("q", limit=2)
    fences = []
    a = await take(engine, "q", "a", ttl_s=50)
    b = await take(engine, "q", "b")
    fences += [a.fence, b.fence]
    await engine.advance(60)  # a expires
    c = await take(engine, "q", "c")
    await engine.revoke(b.id)
    d = await take(engine, "q", "d")
    await engine.release(c)
    e = await take(engine, "q", "e")
    fences += [c.fence, d.fence, e.fence]
    assert fences == sorted(fences) and len(set(fences)) == len(fences)
    await engine.release(d)
    await engine.release(e)


async def test_marks_are_high_water_and_totals_count_each_ending(engine: Engine) -> None:
    await engine.configure("q", limit=2, max_waiting=2)
    a = await take(engine, "q", "a")
    await take(engine, "q", "b", ttl_s=50)
    w1 = await engine.start("q", owner="w1", timeout_s=30)
    w2 = await engine.start("q", owner="w2")
    with pytest.raises(QueueFull):
        (await engine.start("q", owner="x")).result()
    await engine.advance(40)  # w1 times out
    await engine.advance(20)  # b expires: w2 gets its slot
    assert w2.done()
    await engine.release(a)
    await engine.release(w2.result())
    v = await engine.view("q")
    assert v.marks == (2, 2) and (v.in_use, v.waiting) == (0, 0)
    assert v.totals == {
        "granted": 3, "released": 2, "timed_out": 1, "rejected": 1, "cancelled": 0, "expired": 1, "revoked": 0,
        "bad_releases": 0,
    }
    assert w1.done()


async def test_rate_admits_at_most_burst_then_one_per_interval(engine: Engine) -> None:
    await engine.configure("q", limit=10, rate=0.01, burst=2)  # one per 100 s, two at once
    a = await take(engine, "q", "a")
    b = await take(engine, "q", "b")
    c = await engine.start("q", owner="c")
    d = await engine.start("q", owner="d")
    assert not c.done()
    await engine.advance(60)
    assert not c.done()
    await engine.advance(60)  # 120 s: one more token
    assert c.done() and not d.done()
    await engine.advance(60)  # 180 s: the next one is due at 200 s
    assert not d.done()
    await engine.advance(30)
    assert d.done()
    for h in (a, b, c.result(), d.result()):
        await engine.release(h)
    v = await engine.view("q")
    assert v.totals["granted"] == 4 and v.in_use == 0


async def test_a_live_rate_change_restarts_the_schedule(engine: Engine) -> None:
    await engine.configure("q", limit=10, rate=0.01)
    a = await take(engine, "q", "a")
    w = await engine.start("q", owner="w")
    await engine.configure("q", limit=10, rate=1000.0, burst=5)
    await engine.settle()
    assert w.done()
    await engine.configure("q", limit=10, rate=None)
    more = [await take(engine, "q", f"m{i}") for i in range(6)]
    for h in (a, w.result(), *more):
        await engine.release(h)


async def test_a_double_release_counts_a_bad_release(engine: Engine) -> None:
    await engine.configure("q", limit=1)
    lease = await take(engine, "q", "a")
    await engine.release(lease)
    await engine.release(lease)
    assert (await engine.view("q")).totals["bad_releases"] == 1
    held = await take(engine, "q", "b", ttl_s=50)
    await engine.advance(60)
    await engine.release(held)  # expired: a bad release too
    assert (await engine.view("q")).totals["bad_releases"] == 2


async def test_the_queues_default_timeout_applies(engine: Engine) -> None:
    await engine.configure("q", limit=1, timeout_s=100)
    held = await take(engine, "q", "h")
    w = await engine.start("q", owner="w")
    await engine.advance(120)
    with pytest.raises(SlotTimeout):
        w.result()
    await engine.release(held)
