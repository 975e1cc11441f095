"""Leases: optional TTL, renew(), reclaiming expired leases, and fence numbers."""

from __future__ import annotations

import asyncio

import pytest

from embedded_service import LeaseGone, SlotService
from embedded_service.engine import ManualClock


async def test_lease_without_ttl_never_expires(svc: SlotService, clock: ManualClock, stats) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q")
    assert lease.expires_at is None
    clock.advance(86_400 * 7)
    assert lease.id in svc.engine.leases
    assert stats("q").totals.expired == 0


async def test_expired_lease_is_reclaimed_counted_and_hands_off(svc: SlotService, clock: ManualClock, settle, stats) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q", owner="crashed", ttl_s=30)
    assert lease.expires_at == pytest.approx(clock.time() + 30)
    waiter = asyncio.create_task(svc.acquire("q", owner="next"))
    await settle()
    clock.advance(29.9)
    await settle()
    assert not waiter.done()
    clock.advance(0.1)
    await settle()
    assert waiter.result().owner == "next"
    totals = stats("q").totals
    assert (totals.expired, totals.released, totals.granted) == (1, 0, 2)
    with pytest.raises(LeaseGone) as caught:
        svc.renew(lease)
    assert caught.value.reason == "expired"


async def test_renew_pushes_expiry_out(svc: SlotService, clock: ManualClock, stats) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q", ttl_s=10)
    for _ in range(5):
        clock.advance(9)
        svc.renew(lease)
    assert lease.id in svc.engine.leases
    assert lease.expires_at == pytest.approx(clock.time() + 10)
    svc.renew(lease, ttl_s=100)
    clock.advance(99)
    assert lease.id in svc.engine.leases
    clock.advance(1)
    assert lease.id not in svc.engine.leases
    assert stats("q").totals.expired == 1


async def test_renew_can_give_a_ttl_to_a_lease_without_one(svc: SlotService, clock: ManualClock) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q")
    svc.renew(lease, ttl_s=5)
    clock.advance(5)
    assert lease.id not in svc.engine.leases


async def test_waiter_ttl_starts_at_grant_not_at_enqueue(svc: SlotService, clock: ManualClock, settle) -> None:
    svc.configure_queue("q", limit=1)
    holder = await svc.acquire("q")
    waiter = asyncio.create_task(svc.acquire("q", ttl_s=10))
    await settle()
    clock.advance(50)
    svc.release(holder)
    await settle()
    lease = waiter.result()
    assert lease.expires_at == pytest.approx(clock.time() + 10)
    assert lease.waited_s == pytest.approx(50)


async def test_renew_after_release_or_revoke_says_why(svc: SlotService) -> None:
    svc.configure_queue("q", limit=2)
    released = await svc.acquire("q", ttl_s=10)
    revoked = await svc.acquire("q", ttl_s=10)
    svc.release(released)
    assert svc.revoke(revoked.id) is True
    assert svc.revoke(revoked.id) is False
    with pytest.raises(LeaseGone, match="released"):
        svc.renew(released)
    with pytest.raises(LeaseGone, match="revoked"):
        svc.renew(revoked)
    with pytest.raises(LeaseGone, match="unknown"):
        svc.renew("L-never")


async def test_released_lease_timer_does_not_fire_later(svc: SlotService, clock: ManualClock, stats) -> None:
    svc.configure_queue("q", limit=1)
    lease = await svc.acquire("q", ttl_s=10)
    svc.release(lease)
    again = await svc.acquire("q")
    clock.advance(60)
    assert again.id in svc.engine.leases
    assert stats("q").totals.expired == 0


async def test_fences_only_increase_across_queues_and_paths(svc: SlotService, clock: ManualClock, settle) -> None:
    svc.configure_queue("a", limit=1)
    svc.configure_queue("b", limit=3)
    fences: list[int] = []
    first = await svc.acquire("a", ttl_s=1)
    fences.append(first.fence)
    waiter = asyncio.create_task(svc.acquire("a"))
    await settle()
    fences.append((await svc.acquire("b")).fence)
    clock.advance(1)  # the expiry hands "a" to the waiter
    await settle()
    fences.append(waiter.result().fence)
    await svc.delete_queue("b", force=True)
    svc.configure_queue("b", limit=1)
    fences.append((await svc.acquire("b")).fence)
    assert fences == sorted(set(fences))
    assert len(set(fences)) == 4


async def test_ended_leases_remember_why_for_a_bounded_while(svc: SlotService) -> None:
    from embedded_service.engine.core import ENDED_LEASES_KEPT

    svc.configure_queue("q", limit=1)
    ids = []
    for _ in range(ENDED_LEASES_KEPT * 3):
        lease = await svc.acquire("q")
        svc.release(lease)
        ids.append(lease.id)
    for lease_id in ids[-ENDED_LEASES_KEPT:]:
        assert svc.engine.ended_reason(lease_id) == "released"
    assert svc.engine.ended_reason(ids[0]) is None
    assert len(svc.engine._ended) + len(svc.engine._ended_old) <= 2 * ENDED_LEASES_KEPT
