"""Hosts leave the deployment's `hosts` list (and their GPU records leave Redis) once none of their processes is
alive and no GPU lease or waiter is on them, after the stale TTL; a GPU lease still held keeps its host.
A real publisher process is SIGKILLed; the observer is the `ClusterAdmission` a `SlotService` reads its view with
(its process TTL shortened, so the test waits seconds, not tens of seconds)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from embedded_service.cluster import ClusterSlots
from embedded_service.cluster.admission import ClusterAdmission
from embedded_service.cluster.gpus import GpuPublisher
from embedded_service.cluster.slots import ClusterLease
from embedded_service.model import ClusterHost, DeviceSpec

WORKER = Path(__file__).with_name("mp_gpu_worker.py")
TTL_S = 2.0  # the observer's process TTL: hosts go stale and leave within seconds


def devices(host: str) -> list[DeviceSpec]:
    return [DeviceSpec(index=i, uuid=f"{host}-GPU-{i}", memory_total_mib=1000) for i in range(2)]


async def hosts_of(view: ClusterAdmission) -> dict[str, ClusterHost]:
    await view.refresh()
    return {h.host: h for h in view.view.hosts}


async def until_hosts(view: ClusterAdmission, check: object, what: str, limit_s: float = 30) -> dict[str, ClusterHost]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        shown = await hosts_of(view)
        if check(shown):  # type: ignore[operator]
            return shown
        assert loop.time() < deadline, f"never: {what}; hosts: {sorted(shown)}"
        await asyncio.sleep(0.1)


async def test_hosts_whose_processes_are_gone_leave_unless_a_gpu_lease_is_held(ns_url: str, tmp_path: Path) -> None:
    log = tmp_path / "gamma.log"
    specs = json.dumps([d.model_dump() for d in devices("gamma")])
    argv = [sys.executable, str(WORKER), "publish", ns_url, "gamma", specs, str(log)]
    gamma = subprocess.Popen(argv, env=dict(os.environ))
    view = ClusterAdmission(ns_url, refresh_s=60, proc_ttl_s=TTL_S, host_id="watcher")
    await view.open()
    try:
        # delta: one process that takes a GPU lease a remote holder renews (explicit TTL), then leaves
        delta = ClusterSlots(ns_url, host_id="delta", proc_ttl_s=TTL_S)
        await delta.open()
        await delta.configure_queue("g", limit=4)
        publisher = await GpuPublisher(delta, devices=devices("delta"), period_s=0.2, ttl_s=0.6).start()
        held = await delta.acquire("g", owner="remote", gpus=1, gpu_mem_mib=300, ttl_s=60)
        assert (held.host, held.devices) == ("delta", (0,))
        delta.detach(held)  # its holder is elsewhere: delta's process neither renews nor releases it
        await publisher.stop()
        await delta.close()

        shown = await until_hosts(view, lambda h: "gamma" in h and h["gamma"].devices, "gamma publishes")
        assert not shown["gamma"].stale and [d.uuid for d in shown["gamma"].devices] == ["gamma-GPU-0", "gamma-GPU-1"]
        assert shown["delta"].stale and shown["delta"].instances == []  # left cleanly; its lease stays
        assert shown["watcher"].instances == [view.slots.proc_id] and not shown["watcher"].stale

        gamma.send_signal(signal.SIGKILL)
        gamma.wait(10)
        shown = await until_hosts(view, lambda h: "gamma" not in h, "gamma leaves after its processes died")
        assert "delta" in shown and shown["delta"].stale  # its GPU lease is still held: the host stays
        client = view.slots.client
        prefix = view.slots.prefix
        assert not await client.keys(f"{prefix}:h:gamma:*")
        assert not await client.sismember(f"{prefix}:hosts", "gamma")
        assert not await client.hexists(f"{prefix}:hb", "gamma")

        lease = ClusterLease(held.lease_id, "g", "remote", held.fence, ttl_s=60)
        await view.slots.renew(lease, 60)  # the lease on the stale host is intact and renewable
        await view.slots.release(lease)
        shown = await until_hosts(view, lambda h: "delta" not in h, "delta leaves once its lease is released")
        assert list(shown) == ["watcher"]
        assert not await client.keys(f"{prefix}:h:delta:*")
    finally:
        if gamma.poll() is None:
            gamma.kill()
            gamma.wait(10)
        await view.close()
