"""Hosts of a redis-mode deployment: which processes run where, and the GPUs each host publishes.

A host is named by its host id (`ClusterSlots.host_id`: ``SLOTDECK_HOST_ID``, else the hostname), which also
heads the ids of its processes. Every heartbeat notes the host's newest one in Redis (``P:hb``); `read_hosts`
lists every host with a heartbeat or published GPUs. A host without GPUs leaves with its last process (at
once when it closes, at its liveness deadline when it dies). A host that published GPUs is shown stale
until it has no live process, its newest heartbeat is older than the process TTL, its figures expired and
no GPU lease or waiter is on it; then it leaves and its GPU records go (a lease still held keeps its host,
whoever renews it).

`HostGpus` is a `SlotService`'s side of GPU admission in redis mode: after each sample it publishes the
service's device pool (probe figures or configured devices) for its host. Every service of a host may run
one; the host's election in Redis (`GpuPublisher`) lets exactly one of them write, and another takes over
when that one stops (at once) or dies (after the figures' TTL). Processes of one host with different
declared devices therefore see the elected one's figures: declare them alike.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ..engine.devices import DevicePool
from ..errors import SlotDeckError
from ..model import ClusterHost, DeviceInfo, InstanceInfo, LeaseInfo
from .gpus import SHOWN, GpuPublisher
from .slots import _NET_ERRORS, ClusterSlots

log = logging.getLogger("slotdeck.cluster")

FIGURES_TTL_MIN_S = 5.0  # published figures stand this long at least without a new sample


class HostGpus:
    """Publishes `pool` for ``slots.host_id`` when `publish()` is called (every `period_s`, by the sampler).

    A pool without devices publishes nothing (it neither takes the host's election nor offers an empty
    list). Network errors are logged once per spell and retried at the next sample."""

    def __init__(self, slots: ClusterSlots, pool: DevicePool, clock: Callable[[], float], period_s: float) -> None:
        ttl_s = max(FIGURES_TTL_MIN_S, 3 * period_s)
        self.publisher = GpuPublisher(slots, pool=pool, clock=clock, period_s=min(period_s, ttl_s / 2), ttl_s=ttl_s)
        self.pool = pool
        self._failing = False

    @property
    def elected(self) -> bool:
        """Whether this process wrote its host's figures at its last publish."""
        return self.publisher.elected

    async def publish(self) -> None:
        if not len(self.pool):
            return
        try:
            await self.publisher.publish_once()
        except (*_NET_ERRORS, SlotDeckError) as exc:
            if not self._failing:
                log.warning("publishing this host's GPUs failed (retried at the next sample): %s", exc)
            self._failing = True
        else:
            self._failing = False

    async def stop(self) -> None:
        """Resign the host's election (another process of the host publishes at its next sample)."""
        await self.publisher.stop()


async def read_hosts(
    slots: ClusterSlots, instances: list[InstanceInfo], leases: list[LeaseInfo], stale_ttl_s: float
) -> list[ClusterHost]:
    """Every host of the deployment, by host id: its processes (from `instances`), newest heartbeat (Unix
    seconds, Redis clock), whether all its processes are stale, and its GPUs as last published, with the
    reservations and lease ids (from `leases`) Redis has on them. A host that published GPUs and has no
    live process leaves once its newest heartbeat is `stale_ttl_s` old and no GPU lease or waiter is on it."""
    raw = json.loads(await slots._fcall("sd_hosts", int(stale_ttl_s * 1000)))
    by_host: dict[str, list[InstanceInfo]] = {}
    for instance in instances:
        by_host.setdefault(instance.host, []).append(instance)
    on_device: dict[tuple[str, int], list[str]] = {}
    for lease in leases:
        for index in lease.devices:
            on_device.setdefault((lease.host or "", index), []).append(lease.id)
    hosts = []
    for name in sorted({*raw["hosts"], *by_host}):
        entry: dict[str, Any] = raw["hosts"].get(name) or {"hb": 0, "alive": 0, "devices": "[]", "reserved": {}}
        procs = by_host.get(name, [])
        beats = [i.last_heartbeat for i in procs if i.last_heartbeat is not None]
        if entry["hb"]:
            beats.append(entry["hb"] / 1000)
        alive = bool(entry["alive"]) or any(not i.stale for i in procs)
        devices = [
            _device(name, dev, entry["reserved"] or {}, on_device.get((name, dev["i"]), []))
            for dev in json.loads(entry["devices"])
        ]
        hosts.append(
            ClusterHost(
                host=name,
                instances=[i.id for i in procs],
                last_heartbeat=max(beats) if beats else None,
                stale=not alive,
                devices=devices,
                publisher=entry.get("publisher") or None,
            )
        )
    return hosts


def _device(host: str, dev: dict[str, Any], reserved: dict[str, Any], leases: list[str]) -> DeviceInfo:
    """A published device as operators see it; its free memory by admission's rule (cluster/library.py)."""
    index = int(dev["i"])
    held = int(reserved.get(str(index), 0))
    total, used, budget, health = dev.get("t"), dev.get("m"), dev.get("b"), dev["s"]
    free: int | None = None
    if health == "unified":
        free = None if budget is None else budget - held
    elif health not in ("lost", "unreadable") and total is not None:
        free = total - max(used or 0, held)
    shown = {name: dev[key] for key, name in SHOWN.items() if dev.get(key) is not None}
    return DeviceInfo(
        index=index,
        uuid=dev.get("u"),
        memory_total_mib=total,
        memory_used_mib=used,
        memory_reserved_mib=held,
        memory_budget_mib=budget,
        memory_free_mib=free,
        health=health,
        leases=leases,
        host=host,
        **shown,
    )
