"""GPUs per host in cluster mode: one elected publisher per host writes its devices' figures to Redis.

Every process on a host may run a ``GpuPublisher``; each period they all try, and only the one that holds the
host's election key (``P:h:<host>:pub``, same TTL as the figures) writes, so several web workers or Celery
children on one host do not fight. The figures (index, UUID, total and used MiB, health, memory budget)
expire ``ttl_s`` after the last write: when the publisher's process dies, its host's GPUs stop being offered
(waiters for them wait, without holding anyone back; running leases keep their devices until released;
new requests for that host are refused with NoFittingDevice), and another process of that host takes over
the election once the key has expired, or at once when the publisher stops cleanly (it resigns).

Figures come from a ``DevicePool`` on this host fed by a probe (``probes.nvml.NvmlProbe``) or by declared
devices (``DeviceSpec``, for hosts without NVML and tests), so stale, unreadable, lost and unified devices are
published as in-process admission sees them (engine/devices.py). Admission itself (caps, memory, the
reservation rule, placement) runs inside the Redis functions (cluster/library.py), from these figures and
the reservations of the leases held on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from embedded_service.cluster.slots import _NET_ERRORS, ClusterSlots
from embedded_service.engine.devices import DEFAULT_STALE_AFTER_S, DevicePool
from embedded_service.errors import SlotDeckError
from embedded_service.model import DeviceInfo, DeviceSpec
from embedded_service.probes.base import GpuProbe

# published keys shown to operators only (admission reads i, u, t, m, s, b): DeviceInfo field per key
SHOWN = {
    "n": "name",
    "p": "pci_bus_id",
    "ut": "utilization_pct",
    "tc": "temperature_c",
    "r": "health_reason",
    "o": "source",
    "e": "error",
}


def figures(infos: list[DeviceInfo]) -> str:
    """The JSON a host publishes: ``[{i, u?, t?, m?, s, b?, ...}]`` (index, UUID, total MiB, used MiB, health,
    memory budget MiB of a unified device; and for operators the keys of ``SHOWN``); absent keys are unknown."""
    out = []
    for info in infos:
        dev: dict[str, Any] = {"i": info.index, "s": info.health}
        for key, value in (
            ("u", info.uuid),
            ("t", info.memory_total_mib),
            ("m", info.memory_used_mib),
            ("b", info.memory_budget_mib),
            *((k, getattr(info, name)) for k, name in SHOWN.items()),
        ):
            if value is not None:
                dev[key] = value
        out.append(dev)
    return json.dumps(out, separators=(",", ":"))


class GpuPublisher:
    """Publish this host's GPUs for ``slots.host_id`` every ``period_s`` seconds, figures valid ``ttl_s``.

    ``devices``: declared devices (their sizes in MiB; no probe needed); ``probe``: a blocking GPU probe run in
    a thread (its figures replace the declared ones for the same index). ``stale_after_s`` and
    ``memory_budget_mib`` are the in-process pool's (engine/devices.py). ``ttl_s`` must exceed ``period_s``.
    ``pool``: publish this pool as it is, fed by its owner (a `SlotService`'s sampler), with ``clock`` its
    time source (then ``devices`` and ``probe`` are not needed).
    Use ``async with GpuPublisher(slots, ...)`` or ``start()`` / ``stop()``; ``publish_once()`` returns
    whether this process is the host's publisher now.
    """

    def __init__(
        self,
        slots: ClusterSlots,
        *,
        devices: list[DeviceSpec] | None = None,
        probe: GpuProbe | None = None,
        period_s: float = 1.0,
        ttl_s: float = 5.0,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        memory_budget_mib: int | None = None,
        pool: DevicePool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < period_s < ttl_s:
            raise ValueError("period_s must be > 0 and below ttl_s")
        if devices is None and probe is None and pool is None:
            raise ValueError("a GpuPublisher needs declared devices, a probe or a pool")
        self.slots = slots
        self.probe = probe
        self.period_s = period_s
        self.ttl_ms = int(ttl_s * 1000)
        self.clock = clock
        self.pool = (
            pool if pool is not None else DevicePool(stale_after_s=stale_after_s, memory_budget_mib=memory_budget_mib)
        )
        if devices:
            self.pool.configure(devices)
        self.elected = False
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        if self.probe is None:
            return
        now = self.clock()
        try:
            infos, reason = await asyncio.to_thread(self.probe.sample)
        except Exception as exc:  # a probe must never take the publisher down
            infos, reason = [], f"GPU probe failed: {exc}"
        if infos:
            self.pool.update(infos, now)
        else:
            self.pool.read_failed(reason or "the GPU probe read no device", now)

    async def publish_once(self) -> bool:
        """Read the devices and publish them if this process holds (or wins) the host's election."""
        await self._read()
        payload = figures(self.pool.infos(self.clock()))
        res = await self.slots._fcall("sd_gpu_publish", self.slots.host_id, self.slots.proc_id, self.ttl_ms, payload)
        self.elected = bool(res)
        return self.elected

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)  # start() published already
            with contextlib.suppress(*_NET_ERRORS):
                await self.publish_once()

    async def start(self) -> GpuPublisher:
        """Publish now (errors raise here) and then every period in the background."""
        await self.publish_once()
        self._task = asyncio.create_task(self._run(), name="slotdeck-cluster-gpus")
        return self

    async def stop(self) -> None:
        """Stop publishing and resign the election, so another process of the host takes over at its next
        period; the figures expire after their TTL unless one does."""
        if self._task is not None:
            # a publish cut off here may still land after the resignation below: the next publisher
            # then takes over once the key expires (ttl_s) instead of at once
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.elected:
            self.elected = False
            with contextlib.suppress(*_NET_ERRORS, SlotDeckError):
                await self.slots._fcall("sd_gpu_resign", self.slots.host_id, self.slots.proc_id)

    async def __aenter__(self) -> GpuPublisher:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def host_gpus(slots: ClusterSlots) -> dict[str, dict[str, Any]]:
    """Every host's GPUs as Redis has them: ``{host: {"publisher": proc id or "", "devices": [{index, uuid,
    memory_total_mib, memory_used_mib, health, memory_reserved_mib, leases}]}}`` (``leases``: how many
    leases hold the device). A host whose figures expired shows no devices."""
    raw = json.loads(await slots._fcall("sd_gpu_view"))
    out: dict[str, dict[str, Any]] = {}
    for host, entry in raw.items():
        reserved = entry["reserved"] or {}
        devices = [
            {
                "index": dev["i"],
                "uuid": dev.get("u"),
                "memory_total_mib": dev.get("t"),
                "memory_used_mib": dev.get("m"),
                "health": dev["s"],
                "memory_reserved_mib": int(reserved.get(str(dev["i"]), 0)),
                "leases": int(reserved.get(f"n{dev['i']}", 0)),
            }
            for dev in json.loads(entry["devices"])
        ]
        out[host] = {"publisher": entry["publisher"], "devices": devices}
    return out
