"""GPUs in redis mode through `SlotService`: two "hosts" (two host ids, `SLOTDECK_HOST_ID`, on this machine, each
with two declared 1000 MiB devices; there is no GPU here) on one private Redis. Each service publishes its host's
devices; its GPU requests fit only on its own host's devices, under the queue's per-GPU cap and the devices'
memory, and the "first GPU waiter that does not fit reserves" rule holds per host. Both show the same `hosts`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from embedded_service import SlotService
from embedded_service.errors import NoFittingDevice, SlotTimeout
from embedded_service.model import DeviceInfo, DeviceSpec, Snapshot


def devices(host: str) -> list[DeviceSpec]:
    return [DeviceSpec(index=i, uuid=f"{host}-GPU-{i}", memory_total_mib=1000) for i in range(2)]


@pytest.fixture
async def hosts(ns_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[SlotService, SlotService]]:
    made = []
    for host in ("alpha", "beta"):
        monkeypatch.setenv("SLOTDECK_HOST_ID", host)  # read when the service is made
        made.append(SlotService(ns_url, devices=devices(host)))
    a, b = made
    a.configure_queue("capped", limit=10, per_gpu=1, timeout_s=30)
    for name in ("mem", "big", "small"):
        a.configure_queue(name, limit=10, timeout_s=30)
    async with contextlib.AsyncExitStack() as started:
        for svc in made:
            await started.enter_async_context(svc)  # closed in reverse order, however the test ends
        yield a, b


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def waiting(svc: SlotService, queue: str, n: int) -> None:
    async def check() -> bool:
        await svc.refresh()
        return svc.queue_stats(queue).waiting == n

    await until(check, f"{n} waiting in {queue}")


def shown_hosts(snap: Snapshot) -> list[dict[str, Any]]:
    """`hosts` as compared between instances (heartbeat times move with every tick)."""
    return [h.model_dump(exclude={"last_heartbeat"}) for h in snap.hosts]


async def test_gpu_requests_fit_on_their_own_host_under_caps_and_memory(hosts: tuple[SlotService, SlotService]) -> None:
    a, b = hosts
    a1 = await a.acquire("capped", owner="a1", gpus=1, gpu_mem_mib=600, timeout_s=5)
    a2 = await a.acquire("capped", owner="a2", gpus=1, gpu_mem_mib=300, timeout_s=5)
    assert (a1.host, a1.devices, a1.cuda_visible_devices) == ("alpha", (0,), "alpha-GPU-0")
    assert (a2.host, a2.devices) == ("alpha", (1,))
    a3 = asyncio.create_task(a.acquire("capped", owner="a3", gpus=1, gpu_mem_mib=100, timeout_s=30))
    await waiting(a, "capped", 1)  # memory would fit on either device: the cap of 1 per GPU holds it
    b1 = await b.acquire("capped", owner="b1", gpus=1, gpu_mem_mib=600, timeout_s=5)  # beta's GPUs are free
    b2 = await b.acquire("capped", owner="b2", gpu_mem_mib=600, timeout_s=5)  # memory alone: one GPU
    assert (b1.host, b1.devices, b2.host, b2.devices) == ("beta", (0,), "beta", (1,))
    assert not a3.done()

    # memory: beta has 400 MiB left on each device; alpha still 700 on GPU 1, which beta's requests never get
    with pytest.raises(SlotTimeout):
        await b.acquire("mem", owner="b-big", gpu_mem_mib=500, timeout_s=0.5)
    b3 = await b.acquire("mem", owner="b3", gpu_mem_mib=400, timeout_s=5)
    assert (b3.host, b3.devices) == ("beta", (0,))
    with pytest.raises(NoFittingDevice, match="host beta"):
        await b.acquire("mem", owner="b-huge", gpus=3)  # beta has two devices: refused at once

    assert a.release(a1)
    third = await a3
    assert (third.host, third.devices) == ("alpha", (0,))  # a1's device, on a1's host

    async def same_hosts() -> bool:
        await a.refresh()
        await b.refresh()
        return shown_hosts(a.snapshot()) == shown_hosts(b.snapshot())

    await until(same_hosts, "both instances show the same hosts")
    snap = a.snapshot()
    assert [h.host for h in snap.hosts] == ["alpha", "beta"]
    alpha, beta = snap.hosts
    assert alpha.instances == [a.cluster.slots.proc_id] and beta.instances == [b.cluster.slots.proc_id]
    assert not alpha.stale and not beta.stale and alpha.last_heartbeat and beta.last_heartbeat
    assert (alpha.publisher, beta.publisher) == (a.cluster.slots.proc_id, b.cluster.slots.proc_id)
    assert [(d.host, d.index, d.uuid, d.memory_reserved_mib, d.memory_free_mib, d.leases) for d in alpha.devices] == [
        ("alpha", 0, "alpha-GPU-0", 100, 900, [third.id]),
        ("alpha", 1, "alpha-GPU-1", 300, 700, [a2.id]),
    ]
    assert [(d.memory_reserved_mib, sorted(d.leases)) for d in beta.devices] == [
        (1000, sorted([b1.id, b3.id])),
        (600, [b2.id]),
    ]
    assert snap.devices == alpha.devices and b.snapshot().devices == beta.devices  # `devices`: this host's
    held = {x.id: (x.host, x.devices, x.gpu_mem_mib) for x in snap.leases}
    assert held[b3.id] == ("beta", [0], 400) and held[third.id] == ("alpha", [0], 100)
    (capped,) = [q for q in snap.queues if q.config.name == "capped"]
    assert capped.config.per_gpu == 1  # published to Redis with the queue
    for svc, lease in ((a, a2), (a, third), (b, b1), (b, b2), (b, b3)):
        assert svc.release(lease)


async def test_the_first_gpu_waiter_that_does_not_fit_reserves_on_its_own_host(
    hosts: tuple[SlotService, SlotService],
) -> None:
    a, b = hosts
    s1 = await a.acquire("small", owner="s1", gpus=1, gpu_mem_mib=600, timeout_s=5)
    big = asyncio.create_task(a.acquire("big", owner="big", gpus=2, gpu_mem_mib=600, timeout_s=30))
    await waiting(a, "big", 1)
    s2 = asyncio.create_task(a.acquire("small", owner="s2", gpus=1, gpu_mem_mib=500, timeout_s=30))
    await waiting(a, "small", 1)  # GPU 1 of alpha is free, but big is first in alpha's line: it reserves
    other = await b.acquire("small", owner="other", gpus=1, gpu_mem_mib=500, timeout_s=5)
    assert other.host == "beta"  # alpha's reservation holds nobody back on beta
    async with b.slot("big", owner="b-big", gpus=2, gpu_mem_mib=400, timeout_s=5) as both:
        assert (both.host, both.devices) == ("beta", (0, 1))
    assert not big.done() and not s2.done()
    a.release(s1)
    granted = await big
    assert (granted.host, granted.devices) == ("alpha", (0, 1))
    assert not s2.done()  # 400 MiB left on each of alpha's devices
    a.release(granted)
    assert (await s2).host == "alpha"
    a.release(s2.result())
    b.release(other)


class ProbeReading:
    """NVML's reading of one 1000 MiB GPU (the boundary: no GPU here); `used` is what other programs hold."""

    def __init__(self) -> None:
        self.used = 700

    def sample(self) -> tuple[list[DeviceInfo], str | None]:
        info = DeviceInfo(
            index=0,
            uuid="probed-GPU-0",
            name="H200",
            memory_total_mib=1000,
            memory_used_mib=self.used,
            utilization_pct=37.0,
            source="nvml",
        )
        return [info], None


async def test_a_gpu_probes_figures_are_published_and_admit(ns_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTDECK_HOST_ID", "probed")
    probe = ProbeReading()
    async with SlotService(ns_url, gpu_probe=probe, sample_interval_s=0.1) as svc:
        svc.configure_queue("q", limit=4)
        wanted = asyncio.create_task(svc.acquire("q", owner="w", gpu_mem_mib=400, timeout_s=30))
        await waiting(svc, "q", 1)  # 300 MiB free: other programs hold 700
        (device,) = svc.snapshot().devices
        assert (device.host, device.name, device.utilization_pct, device.memory_free_mib) == ("probed", "H200", 37.0, 300)
        probe.used = 100  # the next sample is published: the waiter fits now
        lease = await wanted
        assert (lease.host, lease.devices, lease.cuda_visible_devices) == ("probed", (0,), "probed-GPU-0")
        svc.release(lease)
