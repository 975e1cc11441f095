"""The GPU part of the engine contract: with the same declared devices and probe figures, the in-process
engine (engine/devices.py) and ClusterSlots (one host's devices published to Redis) place leases on the same
devices, honour the same per-GPU caps and memory figures, and apply the same "first GPU waiter that does
not fit reserves" rule."""

from __future__ import annotations

import pytest
from engines import Engine, Held

from embedded_service.errors import NoFittingDevice
from embedded_service.model import DeviceInfo, DeviceSpec

TWO = [DeviceSpec(index=0, uuid="GPU-a", memory_total_mib=1000), DeviceSpec(index=1, uuid="GPU-b", memory_total_mib=1000)]


async def take(engine: Engine, queue: str, owner: str, **kw: object) -> Held:
    task = await engine.start(queue, owner=owner, **kw)  # type: ignore[arg-type]
    assert task.done(), f"{owner} was not granted at once"
    return task.result()


def probed(used: list[int], lost: int | None = None) -> list[DeviceInfo]:
    """NVML's figures for the two devices of TWO (used MiB each; `lost`: that index fell off the bus)."""
    return [
        DeviceInfo(
            index=i,
            uuid=f"GPU-{'ab'[i]}",
            memory_total_mib=1000,
            memory_used_mib=u,
            source="nvml",
            health="lost" if i == lost else "ok",
        )
        for i, u in enumerate(used)
    ]


async def test_memory_decides_the_device_and_a_release_admits_the_waiter(engine: Engine) -> None:
    await engine.declare_devices(TWO)
    await engine.configure("q", limit=10)
    a = await take(engine, "q", "a", gpus=1, gpu_mem_mib=600)
    b = await take(engine, "q", "b", gpus=1, gpu_mem_mib=600)
    assert (a.devices, b.devices) == ((0,), (1,))
    c = await engine.start("q", owner="c", gpu_mem_mib=600)  # memory alone means one GPU
    assert not c.done()
    await engine.release(b)
    await engine.settle()
    assert c.done() and c.result().devices == (1,)
    v = await engine.view("q")
    assert (v.in_use, v.waiting, v.holders) == (2, 0, ["a", "c"])
    await engine.release(a)
    await engine.release(c.result())


async def test_first_gpu_waiter_that_does_not_fit_reserves_across_queues(engine: Engine) -> None:
    await engine.declare_devices(TWO)
    await engine.configure("big", limit=10)
    await engine.configure("small", limit=10)
    await engine.configure("cpu", limit=10)
    s1 = await take(engine, "small", "s1", gpus=1, gpu_mem_mib=600)
    big = await engine.start("big", owner="big", gpus=2, gpu_mem_mib=600)
    assert not big.done()
    s2 = await engine.start("small", owner="s2", gpus=1, gpu_mem_mib=500)  # would fit on GPU 1: big is first
    assert not s2.done()
    plain = await take(engine, "cpu", "plain")  # work without GPUs is never held back
    await engine.release(s1)
    await engine.settle()
    assert big.done() and big.result().devices == (0, 1)
    assert not s2.done()
    await engine.release(big.result())
    await engine.settle()
    assert s2.done() and s2.result().devices == (0,)
    await engine.release(s2.result())
    await engine.release(plain)


async def test_per_gpu_cap_holds_the_queue_without_reserving(engine: Engine) -> None:
    await engine.declare_devices(TWO)
    await engine.configure("capped", limit=10, per_gpu=1)
    await engine.configure("other", limit=10)
    c1 = await take(engine, "capped", "c1", gpus=1)
    c2 = await take(engine, "capped", "c2", gpus=1)
    assert {c1.devices, c2.devices} == {(0,), (1,)}
    c3 = await engine.start("capped", owner="c3", gpus=1)
    assert not c3.done()
    o1 = await take(engine, "other", "o1", gpus=1)  # c3 is held by its own cap: it reserves nothing
    await engine.release(c1)
    await engine.settle()
    assert c3.done() and c3.result().devices == c1.devices
    for held in (c2, c3.result(), o1):
        await engine.release(held)


@pytest.mark.parametrize("placement, second", [("pack", (0,)), ("spread", (1,))])
async def test_placement(engine: Engine, placement: str, second: tuple[int, ...]) -> None:
    await engine.declare_devices(TWO)
    await engine.configure("q", limit=10, placement=placement)
    first = await take(engine, "q", "first", gpus=1, gpu_mem_mib=100)
    nxt = await take(engine, "q", "next", gpus=1, gpu_mem_mib=100)
    assert (first.devices, nxt.devices) == ((0,), second)  # pack: the fullest device that fits
    await engine.release(first)
    await engine.release(nxt)


async def test_foreign_memory_from_the_probe_counts_and_its_drop_admits(engine: Engine) -> None:
    await engine.declare_devices(TWO)
    await engine.configure("q", limit=10)
    await engine.set_figures(probed([700, 0]))
    a = await take(engine, "q", "a", gpus=1, gpu_mem_mib=500)
    assert a.devices == (1,)  # GPU 0 has 300 MiB free: another program holds 700
    both = await engine.start("q", owner="both", gpus=1, gpu_mem_mib=600)
    assert not both.done()
    await engine.set_figures(probed([0, 500]))  # the other program ended (and a allocated its 500)
    assert both.done() and both.result().devices == (0,)
    await engine.release(a)
    await engine.release(both.result())


async def test_a_waiter_that_needs_a_lost_gpu_holds_nobody_back(engine: Engine) -> None:
    await engine.declare_devices(TWO)
    await engine.configure("q", limit=10)
    await engine.configure("other", limit=10)
    await engine.set_figures(probed([0, 0]))
    s1 = await take(engine, "q", "s1", gpus=1, gpu_mem_mib=600)
    big = await engine.start("q", owner="big", gpus=2, gpu_mem_mib=600)
    assert not big.done()
    await engine.set_figures(probed([600, 0], lost=1))
    small = await take(engine, "other", "small", gpus=1, gpu_mem_mib=300)
    assert small.devices == (0,)
    with pytest.raises(NoFittingDevice):
        (await engine.start("other", owner="two", gpus=2)).result()  # one GPU left: refused at once
    await engine.release(s1)
    await engine.release(small)


async def test_requests_no_device_could_hold_are_refused_at_once(engine: Engine) -> None:
    await engine.declare_devices(TWO)
    await engine.configure("q", limit=10)
    with pytest.raises(NoFittingDevice):
        (await engine.start("q", owner="three", gpus=3)).result()
    with pytest.raises(NoFittingDevice):
        (await engine.start("q", owner="huge", gpus=1, gpu_mem_mib=2000)).result()
    v = await engine.view("q")
    assert (v.in_use, v.waiting) == (0, 0)
