"""GPU admission: per-queue caps per device, gpus/gpu_mem_mib, memory-aware fit and the reservation policy."""

from __future__ import annotations

import asyncio

import pytest

from embedded_service import NoFittingDevice, SlotCancelled, SlotService
from embedded_service.model import DeviceInfo, DeviceSpec, QueueStats


def _stats(svc: SlotService, name: str) -> QueueStats:
    return next(q for q in svc.snapshot().queues if q.config.name == name)


def _reserved(svc: SlotService) -> dict[int, int]:
    return {d.index: d.memory_reserved_mib for d in svc.snapshot().devices}


async def test_gpu_lease_lists_devices_and_reserves_memory(gpu_svc: SlotService) -> None:
    gpu_svc.configure_queue("train", limit=4)
    lease = await gpu_svc.acquire("train", gpus=2, gpu_mem_mib=4_000)
    assert sorted(lease.devices) == [0, 1]
    assert _reserved(gpu_svc) == {0: 4_000, 1: 4_000}
    assert {d.index: d.leases for d in gpu_svc.snapshot().devices} == {0: [lease.id], 1: [lease.id]}
    assert gpu_svc.snapshot().leases[0].devices == [0, 1]
    gpu_svc.release(lease)
    assert _reserved(gpu_svc) == {0: 0, 1: 0}


async def test_memory_only_request_means_one_gpu(gpu_svc: SlotService) -> None:
    gpu_svc.configure_queue("q", limit=4)
    lease = await gpu_svc.acquire("q", gpu_mem_mib=1_000)
    assert len(lease.devices) == 1


async def test_impossible_requests_fail_at_once(gpu_svc: SlotService) -> None:
    gpu_svc.configure_queue("q", limit=4)
    with pytest.raises(NoFittingDevice):
        await gpu_svc.acquire("q", gpus=3)
    with pytest.raises(NoFittingDevice):
        await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=20_000)
    assert _stats(gpu_svc, "q").waiting == 0


async def test_promised_memory_counts_against_newcomers(gpu_svc: SlotService, settle) -> None:
    gpu_svc.configure_queue("q", limit=10)
    a = await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=10_000)
    b = await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=10_000)
    assert {a.devices, b.devices} == {(0,), (1,)}  # the second did not fit beside the first
    waiter = asyncio.create_task(gpu_svc.acquire("q", gpus=1, gpu_mem_mib=10_000))
    await settle()
    assert not waiter.done()
    gpu_svc.release(b)
    await settle()
    assert waiter.result().devices == b.devices


async def test_probe_figures_count_when_larger_than_promises(gpu_svc: SlotService, settle) -> None:
    """Memory used by other processes (as the probe sees it) keeps newcomers off that device."""
    gpu_svc.configure_queue("q", limit=10)
    gpu_svc.engine.update_devices(
        [
            DeviceInfo(index=0, memory_total_mib=16_384, memory_used_mib=15_000, source="nvml"),
            DeviceInfo(index=1, memory_total_mib=16_384, memory_used_mib=1_000, source="nvml"),
        ]
    )
    lease = await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=4_000)
    assert lease.devices == (1,)
    waiter = asyncio.create_task(gpu_svc.acquire("q", gpus=2, gpu_mem_mib=2_000))
    await settle()
    assert not waiter.done()
    gpu_svc.engine.update_devices(  # the other process on GPU 0 exited
        [DeviceInfo(index=0, memory_total_mib=16_384, memory_used_mib=500, source="nvml")]
    )
    await settle()
    assert sorted(waiter.result().devices) == [0, 1]


async def test_best_fit_keeps_room_for_a_large_request(gpu_svc: SlotService) -> None:
    gpu_svc.configure_queue("q", limit=10, placement="pack")
    await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=8_000)  # goes to some device
    small = await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=4_000)
    big = await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=16_000)  # still fits: the small one went beside the first
    assert small.devices != big.devices


async def test_per_gpu_caps_a_queue_per_device(gpu_svc: SlotService, settle) -> None:
    gpu_svc.configure_queue("q", limit=10, per_gpu=1)
    gpu_svc.configure_queue("other", limit=10)
    a = await gpu_svc.acquire("q", gpus=1)
    b = await gpu_svc.acquire("q", gpus=1)
    assert {a.devices, b.devices} == {(0,), (1,)}
    capped = asyncio.create_task(gpu_svc.acquire("q", gpus=1))
    await settle()
    assert not capped.done()
    other = await asyncio.wait_for(gpu_svc.acquire("other", gpus=1), 1)  # the cap is per queue
    assert other.devices
    gpu_svc.release(a)
    await settle()
    assert capped.result().devices == a.devices


async def test_large_request_is_not_starved_by_a_stream_of_small_ones(gpu_svc: SlotService, settle) -> None:
    """The documented policy: the first GPU waiter that does not fit reserves; later GPU waiters wait behind it."""
    gpu_svc.configure_queue("small", limit=100)
    gpu_svc.configure_queue("big", limit=1)
    running = [await gpu_svc.acquire("small", gpus=1, gpu_mem_mib=6_000) for _ in range(2)]
    big = asyncio.create_task(gpu_svc.acquire("big", gpus=2, gpu_mem_mib=12_000))
    await settle()
    stream: list[asyncio.Task] = []
    for old in running:  # small ones keep arriving and finishing
        stream.append(asyncio.create_task(gpu_svc.acquire("small", gpus=1, gpu_mem_mib=6_000)))
        await settle()
        gpu_svc.release(old)
        await settle()
        assert not stream[-1].done() or big.done(), "a small request went ahead of the waiting large one"
    assert sorted(big.result().devices) == [0, 1]
    assert not any(t.done() for t in stream)
    gpu_svc.release(big.result())
    await settle()
    assert all(t.done() for t in stream)


async def test_reservation_does_not_hold_back_plain_waiters(gpu_svc: SlotService, settle) -> None:
    gpu_svc.configure_queue("gpu", limit=10)
    gpu_svc.configure_queue("cpu", limit=1)
    hog = await gpu_svc.acquire("gpu", gpus=2, gpu_mem_mib=10_000)
    big = asyncio.create_task(gpu_svc.acquire("gpu", gpus=2, gpu_mem_mib=10_000))
    await settle()
    cpu_holder = await gpu_svc.acquire("cpu")
    cpu_waiter = asyncio.create_task(gpu_svc.acquire("cpu"))
    await settle()
    gpu_svc.release(cpu_holder)
    await settle()
    assert cpu_waiter.done() and not big.done()
    gpu_svc.release(hog)
    await settle()
    assert big.done()


async def test_a_waiter_capped_by_its_own_queue_does_not_block_other_queues(gpu_svc: SlotService, settle) -> None:
    """per_gpu is like a limit: a waiter held by its own queue's cap is not short of shared GPUs."""
    gpu_svc.configure_queue("capped", limit=10, per_gpu=1)
    gpu_svc.configure_queue("free", limit=10)
    await gpu_svc.acquire("capped", gpus=2)
    stuck = asyncio.create_task(gpu_svc.acquire("capped", gpus=1))
    await settle()
    other = asyncio.create_task(gpu_svc.acquire("free", gpus=1, gpu_mem_mib=1_000))
    await settle()
    assert not stuck.done()
    assert other.done(), "memory is free; only the capped queue's own cap holds its waiter"


async def test_gpu_waiters_follow_priority_within_a_queue(gpu_svc: SlotService, settle) -> None:
    gpu_svc.configure_queue("q", limit=10)
    hog = await gpu_svc.acquire("q", gpus=2, gpu_mem_mib=16_000)
    order: list[str] = []

    async def want(name: str, priority: int) -> None:
        lease = await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=16_000, priority=priority)
        order.append(name)
        await asyncio.sleep(0)
        gpu_svc.release(lease)

    tasks = []
    for name, priority in [("late", 1), ("first", 0), ("second", 0)]:
        tasks.append(asyncio.create_task(want(name, priority)))
        await settle(1)
    gpu_svc.release(hog)
    await asyncio.gather(*tasks)
    assert order[:2] == ["first", "second"] and order[2] == "late"


async def _reserving_line(gpu_svc: SlotService, settle) -> tuple[asyncio.Task, asyncio.Task]:
    """A 2-GPU waiter that does not fit (it reserves) and a small one that would fit, behind it."""
    gpu_svc.configure_queue("q", limit=10)
    await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=10_000)
    big = asyncio.create_task(gpu_svc.acquire("q", gpus=2, gpu_mem_mib=10_000))
    await settle()
    small = asyncio.create_task(gpu_svc.acquire("q", gpus=1, gpu_mem_mib=1_000))
    await settle()
    assert not big.done() and not small.done()
    return big, small


async def test_cancelled_gpu_waiter_unblocks_the_line(gpu_svc: SlotService, settle) -> None:
    big, small = await _reserving_line(gpu_svc, settle)
    big.cancel()
    await settle()
    assert small.done()


async def test_force_delete_of_a_reserving_queue_grants_nothing_inside_it(gpu_svc: SlotService, settle) -> None:
    big, small = await _reserving_line(gpu_svc, settle)
    await gpu_svc.delete_queue("q", force=True)
    await settle()
    assert isinstance(big.exception(), SlotCancelled)
    assert isinstance(small.exception(), SlotCancelled)
    assert _reserved(gpu_svc) == {0: 0, 1: 0}
    assert gpu_svc.snapshot().leases == []


async def test_deleting_a_queue_frees_its_devices_for_others(gpu_svc: SlotService, settle) -> None:
    gpu_svc.configure_queue("old", limit=10)
    gpu_svc.configure_queue("new", limit=10)
    await gpu_svc.acquire("old", gpus=2, gpu_mem_mib=16_000)
    waiter = asyncio.create_task(gpu_svc.acquire("new", gpus=1, gpu_mem_mib=8_000))
    await settle()
    await gpu_svc.delete_queue("old", force=True)
    await settle()
    assert waiter.done()


async def test_devices_of_unknown_size_refuse_memory_requests_without_a_budget(clock) -> None:
    """A declared device without a size (like a unified-memory GPU) is not unlimited: memory needs a budget."""
    async with SlotService(clock=clock, devices=[DeviceSpec(index=0)], sample_interval_s=3600) as svc:
        svc.configure_queue("q", limit=3, per_gpu=2)
        with pytest.raises(NoFittingDevice, match=r"no memory size.*gpu_memory_budget_mib"):
            await svc.acquire("q", gpus=1, gpu_mem_mib=50_000)
        leases = [await svc.acquire("q", gpus=1) for _ in range(2)]  # no memory asked: caps only
        assert all(lease.devices == (0,) for lease in leases)
        third = asyncio.create_task(svc.acquire("q", gpus=1))
        await asyncio.sleep(0)
        assert not third.done()
        third.cancel()
        device = svc.snapshot().devices[0]
        assert (device.health, device.memory_free_mib) == ("unified", None)


async def test_devices_of_unknown_size_admit_memory_against_the_budget(clock, settle) -> None:
    devices = [DeviceSpec(index=0)]
    async with SlotService(clock=clock, devices=devices, gpu_memory_budget_mib=10_000, sample_interval_s=3600) as svc:
        svc.configure_queue("q", limit=5)
        with pytest.raises(NoFittingDevice):
            await svc.acquire("q", gpus=1, gpu_mem_mib=12_000)  # more than the whole budget
        first = await svc.acquire("q", gpus=1, gpu_mem_mib=6_000)
        second = asyncio.create_task(svc.acquire("q", gpus=1, gpu_mem_mib=6_000))
        await settle()
        assert not second.done(), "6,000 + 6,000 MiB is over the 10,000 MiB budget"
        device = svc.snapshot().devices[0]
        assert (device.memory_budget_mib, device.memory_free_mib) == (10_000, 4_000)
        svc.release(first)
        await settle()
        assert second.result().devices == (0,)


async def test_plain_newcomer_does_not_pass_a_gpu_waiter_of_its_own_queue(gpu_svc: SlotService, settle) -> None:
    """Within a queue grants follow (priority, arrival) strictly, GPU or not."""
    gpu_svc.configure_queue("q", limit=5)
    hog = await gpu_svc.acquire("q", gpus=2, gpu_mem_mib=16_000)
    gpu_waiter = asyncio.create_task(gpu_svc.acquire("q", gpus=1, gpu_mem_mib=8_000))
    await settle()
    plain = asyncio.create_task(gpu_svc.acquire("q"))
    await settle()
    assert not gpu_waiter.done() and not plain.done(), "the plain newcomer jumped the line"
    gpu_svc.release(hog)
    await settle()
    assert gpu_waiter.done() and plain.done()


async def test_spread_puts_one_gpu_jobs_on_every_idle_gpu_first(gpu_svc: SlotService) -> None:
    """Two idle GPUs, limit 4, four gpus=1 leases: the default placement uses both GPUs (before: all on GPU 0)."""
    gpu_svc.configure_queue("q", limit=4)
    assert gpu_svc.queue_config("q").placement == "spread"
    leases = [await gpu_svc.acquire("q", gpus=1) for _ in range(4)]
    assert sorted(lease.devices[0] for lease in leases) == [0, 0, 1, 1]
    assert [lease.devices[0] for lease in leases[:2]] == [0, 1]


async def test_spread_prefers_the_device_with_more_free_memory_among_equally_busy_ones(gpu_svc: SlotService) -> None:
    gpu_svc.configure_queue("q", limit=4)
    a = await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=8_000)
    b = await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=2_000)
    assert a.devices != b.devices
    c = await gpu_svc.acquire("q", gpus=1, gpu_mem_mib=1_000)
    assert c.devices == b.devices, "both hold one lease; b's device has more memory left"


async def test_pack_fills_one_device_before_the_next(gpu_svc: SlotService) -> None:
    gpu_svc.configure_queue("q", limit=4, placement="pack")
    leases = [await gpu_svc.acquire("q", gpus=1) for _ in range(4)]
    assert [lease.devices for lease in leases] == [(0,)] * 4


async def test_placement_is_a_queue_setting_that_can_change(gpu_svc: SlotService) -> None:
    gpu_svc.configure_queue("q", limit=4, placement="pack")
    await gpu_svc.update_queue("q", placement="spread")
    first, second = [await gpu_svc.acquire("q", gpus=1) for _ in range(2)]
    assert {first.devices, second.devices} == {(0,), (1,)}
    with pytest.raises(ValueError):
        gpu_svc.configure_queue("q", placement="random")
