"""`RemoteDesk`, the service layer of remote leases, driven without HTTP on a manual clock: claim TTL and
pick-up, one answer step that renews, ownership, client-named requests and the drain."""

from __future__ import annotations

import asyncio

import pytest

from embedded_service import SlotService
from embedded_service.engine import Lease, ManualClock
from embedded_service.engine.queues import Waiter
from embedded_service.errors import NotYours, ServerUnavailable, SlotCancelled, UnknownLease, UnknownWaiter
from embedded_service.model import AcquireRequest
from embedded_service.remote import CLAIM_TTL_S


async def never() -> None:
    await asyncio.Event().wait()  # a client that stays connected


async def poll(svc: SlotService, who: str, operator: bool = False, **fields: object) -> Lease | Waiter:
    body = AcquireRequest.model_validate({"wait_s": 0, "ttl_s": 60, **fields})
    return await svc.remote.acquire("q", body, who, operator, 0, never)


@pytest.fixture
async def q(svc: SlotService) -> SlotService:
    svc.configure_queue("q", limit=1)
    return svc


async def granted_while_nobody_polls(q: SlotService) -> Waiter:
    """b's waiter, granted when a's lease is released, with no poll of b's open."""
    first = await poll(q, "a")
    waiter = await poll(q, "b")
    assert isinstance(first, Lease) and isinstance(waiter, Waiter)
    q.remote.release(first.id, "a", operator=False)
    await asyncio.sleep(0)
    return waiter


async def test_a_grant_nobody_polls_is_on_a_claim_ttl_until_a_poll_answers_it(q: SlotService, clock: ManualClock) -> None:
    waiter = await granted_while_nobody_polls(q)
    lease = waiter.future.result()
    assert (lease.ttl_s, lease.id in q.remote.short) == (CLAIM_TTL_S, True)
    clock.advance(3)
    answered = await poll(q, "b", waiter_id=waiter.id)
    assert answered is lease and lease.id not in q.remote.short
    assert (lease.ttl_s, lease.expires_at) == (60, clock.time() + 60)  # the full TTL, counted from the answer
    assert q.remote.owns(lease.id, "b") and not q.remote.owns(lease.id, "a")


async def test_a_grant_not_picked_up_within_its_claim_ttl_is_gone(q: SlotService, clock: ManualClock) -> None:
    waiter = await granted_while_nobody_polls(q)
    clock.advance(CLAIM_TTL_S + 1)
    with pytest.raises(SlotCancelled, match="claim TTL"):
        await poll(q, "b", waiter_id=waiter.id)
    assert q.queue_stats("q").in_use == 0


async def test_only_its_maker_or_an_operator_renews_or_releases_a_lease(q: SlotService, clock: ManualClock) -> None:
    lease = await poll(q, "a")
    assert isinstance(lease, Lease)
    with pytest.raises(NotYours):
        q.remote.renew(lease.id, "b", operator=False, ttl_s=None)
    with pytest.raises(NotYours):
        q.remote.release(lease.id, "b", operator=False)
    assert q.remote.renew(lease.id, "root", operator=True, ttl_s=30).expires_at == clock.time() + 30
    q.remote.release(lease.id, "a", operator=False)
    q.remote.release(lease.id, "a", operator=False)  # ended already: released already
    with pytest.raises(UnknownLease):
        q.remote.release("never-made", "a", operator=False)


async def test_a_retried_request_gets_the_same_lease_with_its_ttl_from_now(q: SlotService, clock: ManualClock) -> None:
    lease = await poll(q, "a", request_id="req-00000001")
    clock.advance(20)
    again = await poll(q, "a", request_id="req-00000001")
    assert isinstance(again, Lease) and again.id == lease.id and again.expires_at == clock.time() + 60
    other = await poll(q, "b", request_id="req-00000001")  # the same name from another token is another request
    assert isinstance(other, Waiter)


async def test_a_withdrawal_that_overtakes_its_request_keeps_it_from_ever_waiting(q: SlotService) -> None:
    with pytest.raises(UnknownWaiter):
        q.remote.withdraw("req-00000002", "a")
    with pytest.raises(SlotCancelled, match="cancelled by its client"):
        await poll(q, "a", request_id="req-00000002")
    assert q.queue_stats("q").waiting == 0


async def test_a_drain_takes_remote_waiters_out_of_line_and_admits_nobody(q: SlotService) -> None:
    lease = await poll(q, "a")
    waiter = await poll(q, "b")
    assert isinstance(lease, Lease) and isinstance(waiter, Waiter)
    assert q.remote.stop_admitting() and not q.remote.stop_admitting()
    await asyncio.sleep(0)
    assert waiter.future.done() and q.queue_stats("q").waiting == 0
    with pytest.raises(ServerUnavailable, match="draining"):
        await poll(q, "c")
    with pytest.raises(ServerUnavailable):
        await poll(q, "b", waiter_id=waiter.id)
