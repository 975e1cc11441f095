"""`python -m embedded_service.demo`: a server with synthetic load, to try the dashboard on.

Several queues with workers that take and give back slots at random, a few
GPUs whose memory and utilisation follow the leases on them (a synthetic probe,
labelled as such), and one command job that prints a line a second. It prints
one JSON line `{"url": ..., "token": ...}` when it serves, then runs until
SIGTERM/SIGINT. Used by the screenshot test and `benchmarks/desktop.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import signal
import sys
import time
from typing import Any

from .api.embedded import EmbeddedServer
from .model import DeviceInfo, DeviceSpec, HostInfo
from .service import SlotService

GPU_MEMORY_MIB = 81_559


class SyntheticGpuProbe:
    """GPU figures made up from the engine's own reservations (plus a wave), for hosts without GPUs."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.service: SlotService | None = None

    def sample(self) -> tuple[list[DeviceInfo], str | None]:
        reserved = self._reserved()
        wave = math.sin(time.time() / 7)
        devices = [
            DeviceInfo(
                index=i,
                uuid=f"GPU-demo-{i}",
                name="Demo GPU (synthetic)",
                memory_total_mib=GPU_MEMORY_MIB,
                memory_used_mib=int(min(GPU_MEMORY_MIB, reserved.get(i, 0) * (0.8 + 0.1 * wave) + 900)),
                utilization_pct=max(0.0, min(100.0, (35 if reserved.get(i) else 2) + 25 * wave + random.uniform(-5, 5))),
                temperature_c=45 + 20 * (reserved.get(i, 0) / GPU_MEMORY_MIB),
                source="demo",
            )
            for i in range(self.count)
        ]
        return devices, None

    def _reserved(self) -> dict[int, int]:
        # read from the probe's thread: only plain ints of a dict that never changes size (devices are fixed)
        if self.service is None:
            return {}
        return {index: d.reserved_mib for index, d in self.service.engine.pool.devices.items()}


class SyntheticHostProbe:
    def sample(self) -> HostInfo:
        return HostInfo(
            cpu_pct=40 + 30 * math.sin(time.time() / 11), cpu_count=32, memory_total_mib=262_144, memory_used_mib=98_000
        )


async def _worker(svc: SlotService, queue: str, owner: str, gpus: int, hold_s: float) -> None:
    while True:
        try:
            async with svc.slot(
                queue,
                owner=owner,
                priority=random.choice((0, 0, 1)),
                gpus=gpus,
                gpu_mem_mib=random.choice((8_000, 16_000, 24_000)) if gpus else 0,
                timeout_s=120,
            ):
                await asyncio.sleep(random.uniform(0.3, 1.7) * hold_s)
        except Exception:  # demo load: a timeout or a cancel by the operator just starts the next round
            await asyncio.sleep(0.2)
        await asyncio.sleep(random.uniform(0, hold_s / 2))


def demo_setup(queues: int, gpus: int, probe: SyntheticGpuProbe, workers: list[asyncio.Task[None]]) -> Any:
    """The embedded server's setup hook: queues, a ticking command job and the load."""

    async def setup(svc: SlotService) -> None:
        probe.service = svc
        names = ["chat", "train", "inference", "reports", "embed", "batch", "eval", "ocr", "tts", "rerank"]
        names += [f"queue{i}" for i in range(len(names), queues)]
        for i, name in enumerate(names[:queues]):
            gpu_queue = gpus > 0 and name in ("train", "inference", "eval")
            limit = {"chat": 4, "train": 2, "inference": 6}.get(name, 2 + i % 4)
            svc.configure_queue(name, limit=limit, stuck_after_s=60, per_gpu=1 if name == "train" else None, max_waiting=500)
            for w in range(limit + 2 + i % 5):
                workers.append(asyncio.create_task(_worker(svc, name, f"user{w % 7}", 1 if gpu_queue else 0, 2.0 + i % 3)))
        await svc.submit_command(
            [sys.executable, "-c", "import time\nfor i in range(100000):\n    print('step', i, flush=True); time.sleep(1)"],
            queue="default",
        )

    return setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a SlotDeck server with synthetic load")
    parser.add_argument("--queues", type=int, default=4)
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--snapshot-hz", type=float, default=2.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--store", default="memory://")
    args = parser.parse_args(argv)
    probe = SyntheticGpuProbe(args.gpus)
    workers: list[asyncio.Task[None]] = []
    server = EmbeddedServer(
        args.store,
        port=args.port,
        probes=False,
        write_local=False,
        grace_s=1.0,
        snapshot_hz=args.snapshot_hz,
        setup=demo_setup(args.queues, args.gpus, probe, workers),
        devices=[DeviceSpec(index=i, name="Demo GPU", memory_total_mib=GPU_MEMORY_MIB) for i in range(args.gpus)],
        gpu_probe=probe,
        host_probe=SyntheticHostProbe(),
        sample_interval_s=1.0 / max(1.0, args.snapshot_hz),
    )
    server.start()
    print(json.dumps({"url": server.url, "token": server.token}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(KeyboardInterrupt):
        loop.run_until_complete(stop.wait())
    for task in workers:
        server.loop.call_soon_threadsafe(task.cancel)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
