"""The blocking facade: the same slot() from plain threads, the loop in a background thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from embedded_service import BlockingSlotService, QueueFull, SlotTimeout, UnknownQueue
from embedded_service.engine import Lease


@pytest.fixture
def bsvc() -> Iterator[BlockingSlotService]:
    with BlockingSlotService(sample_interval_s=3600) as service:
        yield service


def _in_use(bsvc: BlockingSlotService, name: str) -> int:
    return next(q.in_use for q in bsvc.snapshot().queues if q.config.name == name)


def test_slot_from_many_threads_respects_the_limit(bsvc: BlockingSlotService) -> None:
    bsvc.configure_queue("q", limit=3)
    lock = threading.Lock()
    inside = 0
    peak = 0
    errors: list[BaseException] = []
    start = threading.Barrier(12)

    def worker() -> None:
        nonlocal inside, peak
        try:
            start.wait()
            for _ in range(5):
                with bsvc.slot("q", owner=threading.current_thread().name, timeout_s=30):
                    with lock:
                        inside += 1
                        peak = max(peak, inside)
                    time.sleep(0.002)
                    with lock:
                        inside -= 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert peak == 3
    snapshot = bsvc.snapshot()
    q = snapshot.queues[0]
    assert (q.in_use, q.waiting, q.totals.granted, q.totals.released) == (0, 0, 60, 60)


def test_errors_reach_the_calling_thread(bsvc: BlockingSlotService) -> None:
    bsvc.configure_queue("q", limit=1, max_waiting=0)
    with pytest.raises(UnknownQueue):
        bsvc.acquire("missing")
    lease = bsvc.acquire("q")
    with pytest.raises(QueueFull):
        bsvc.acquire("q")
    bsvc.configure_queue("q", max_waiting=None)
    with pytest.raises(SlotTimeout):
        bsvc.acquire("q", timeout_s=0.05)
    assert bsvc.release(lease) is True
    assert bsvc.release(lease) is False


def test_waiting_thread_does_not_spin(bsvc: BlockingSlotService) -> None:
    """A thread blocked on a held slot for 0.5 s uses almost no CPU (no busy loop, no GIL spin)."""
    bsvc.configure_queue("q", limit=1)
    holder = bsvc.acquire("q")
    got: list[Lease] = []
    waiter = threading.Thread(target=lambda: got.append(bsvc.acquire("q", timeout_s=30)))
    cpu_before = time.process_time()
    waiter.start()
    time.sleep(0.5)
    cpu_used = time.process_time() - cpu_before
    assert waiter.is_alive() and not got
    bsvc.release(holder)
    waiter.join(5)
    assert got and _in_use(bsvc, "q") == 1
    assert cpu_used < 0.2, f"{cpu_used:.3f}s of CPU while only waiting"


def test_other_threads_run_python_while_one_waits(bsvc: BlockingSlotService) -> None:
    bsvc.configure_queue("q", limit=1)
    holder = bsvc.acquire("q")
    waiter = threading.Thread(target=lambda: bsvc.release(bsvc.acquire("q", timeout_s=30)))
    waiter.start()
    counted = sum(1 for _ in range(2_000_000))  # would crawl if the waiter held the GIL
    assert counted == 2_000_000 and waiter.is_alive()
    bsvc.release(holder)
    waiter.join(5)
    assert not waiter.is_alive()


def test_call_timeout_leaves_no_waiter_behind(bsvc: BlockingSlotService) -> None:
    bsvc.configure_queue("q", limit=1)
    holder = bsvc.acquire("q")
    with pytest.raises(TimeoutError):
        bsvc.call(bsvc.service.acquire("q", timeout_s=30), timeout=0.05, undo=bsvc.service.release)
    deadline = time.monotonic() + 5
    while bsvc.snapshot().queues[0].waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bsvc.snapshot().queues[0].waiting == 0
    bsvc.release(holder)


def test_lease_granted_as_the_thread_gives_up_is_released(bsvc: BlockingSlotService) -> None:
    """The grant completes on the loop, but the loop stalls before the result reaches the thread."""
    bsvc.configure_queue("q", limit=1)

    async def acquire_then_stall() -> Lease:
        lease = await bsvc.service.acquire("q")
        asyncio.get_running_loop().call_soon(time.sleep, 1.0)  # runs before the result is handed over
        return lease

    try:
        lease = bsvc.call(acquire_then_stall(), timeout=0.05, undo=bsvc.service.release)
    except TimeoutError:
        pass
    else:  # only on a machine so loaded that this thread slept through the whole stall
        bsvc.release(lease)
    assert _in_use(bsvc, "q") == 0
    assert bsvc.snapshot().queues[0].totals.released == 1


def test_live_control_from_a_thread(bsvc: BlockingSlotService) -> None:
    bsvc.configure_queue("q", limit=1)
    holder = bsvc.acquire("q")
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(bsvc.acquire("q", timeout_s=30)))
    waiter.start()
    deadline = time.monotonic() + 5
    while not bsvc.snapshot().waiters and time.monotonic() < deadline:
        time.sleep(0.01)
    bsvc.pause("q")
    bsvc.set_limit("q", 2)
    assert not result
    bsvc.resume("q")
    waiter.join(5)
    assert isinstance(result[0], Lease)
    assert bsvc.cancel(holder.id) is True  # a thread's holder has no task to cancel: revoked
    assert _in_use(bsvc, "q") == 1
    bsvc.call(bsvc.service.sample_once())
    assert bsvc.history(60).queues["q"].in_use[-1] == 1
