"""A worker process for the GPU proofs: ``python mp_gpu_worker.py MODE URL HOST DEVICES_JSON LOG [QUEUE TASKS ROUNDS MIB]``.

Every mode opens ClusterSlots with ``host_id=HOST`` and runs a GpuPublisher for HOST's declared devices
(DEVICES_JSON: a list of DeviceSpec fields; period 0.2 s, figures valid 1 s), as each process of a host would.
MODE publish: write {"ready": elected} to LOG, then sleep (the test SIGKILLs it).
MODE churn: TASKS asyncio tasks each take one GPU with a random share of MIB MiB (1/2 or all of it) in QUEUE,
ROUNDS times, logging JSON lines start/enter/leave/end (time.monotonic(), system-wide on Linux) with the
lease's host, devices, UUIDs and MiB, as seen from inside the process.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from embedded_service.cluster import ClusterSlots
from embedded_service.cluster.gpus import GpuPublisher
from embedded_service.model import DeviceSpec


async def main(mode: str, url: str, host: str, devices: str, log: str, rest: list[str]) -> None:
    specs = [DeviceSpec(**d) for d in json.loads(devices)]
    out = open(log, "a", buffering=1)  # noqa: SIM115

    def ev(**kw: object) -> None:
        out.write(json.dumps({"t": time.monotonic(), **kw}) + "\n")

    slots = ClusterSlots(url, host_id=host, lease_ttl_s=10, claim_ttl_s=3, proc_ttl_s=5)
    async with slots, GpuPublisher(slots, devices=specs, period_s=0.2, ttl_s=1.0) as publisher:
        if mode == "publish":
            ev(e="ready", elected=publisher.elected)
            await asyncio.sleep(3600)
            return
        queue, n_tasks, rounds, mib = rest[0], int(rest[1]), int(rest[2]), int(rest[3])

        async def one(task: int) -> None:
            for r in range(rounds):
                key = f"{slots.proc_id}/{task}/{r}"
                need = random.choice((mib // 2, mib))
                ev(e="start", k=key)
                try:
                    lease = await slots.acquire(queue, owner=key, gpus=1, gpu_mem_mib=need, timeout_s=120)
                except Exception as exc:
                    ev(e="end", k=key, ok=False, err=type(exc).__name__)
                    continue
                ev(e="enter", k=key, h=lease.host, d=list(lease.devices), u=list(lease.device_uuids), m=need)
                await asyncio.sleep(random.uniform(0.005, 0.03))
                ev(e="leave", k=key)
                await slots.release(lease)
                ev(e="end", k=key, ok=True)

        await asyncio.gather(*(one(i) for i in range(n_tasks)))
    out.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6], sys.argv[6:]))
