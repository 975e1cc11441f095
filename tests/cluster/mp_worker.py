"""A worker process for the multi-process proofs: ``python mp_worker.py MODE URL LOGFILE [N_TASKS ROUNDS [LEASE_TTL_S]]``.

MODE churn: N asyncio tasks each take the "q" slot ROUNDS times (priority 0 or 1 at random),
logging one JSON line per event (start/enter/leave/end with time.monotonic(), which is system-wide
on Linux) to LOGFILE; see proofs.py. A grant that arrives already lost is not entered.
MODE hold: take one slot, write {"held": fence}, then sleep (the test SIGKILLs it).
MODE wait: write {"waiting": true}, then wait for a slot (the test SIGKILLs it).
MODE once: wait for a slot, write {"fence": n}, release, exit.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from embedded_service.cluster import ClusterSlots


async def churn(url: str, log: str, n_tasks: int, rounds: int, lease_ttl_s: float) -> None:
    out = open(log, "a", buffering=1)  # noqa: SIM115

    def ev(**kw: object) -> None:
        out.write(json.dumps({"t": time.monotonic(), **kw}) + "\n")

    async with ClusterSlots(url, lease_ttl_s=lease_ttl_s, claim_ttl_s=min(5.0, lease_ttl_s / 2)) as slots:

        async def one(task: int) -> None:
            for r in range(rounds):
                key = f"{slots.proc_id}/{task}/{r}"
                prio = random.choice((0, 1))
                ev(e="start", k=key, p=prio)
                try:
                    lease = await slots.acquire("q", owner=key, priority=prio, timeout_s=120)
                except Exception as exc:
                    ev(e="end", k=key, ok=False, err=type(exc).__name__)
                    continue
                if lease.lost:
                    await slots.release(lease)
                    ev(e="end", k=key, ok=False, err="lost:" + str(lease.lost_reason))
                    continue
                ev(e="enter", k=key, f=lease.fence, q=lease.queued_at)
                await asyncio.sleep(random.uniform(0.002, 0.02))
                ev(e="leave", k=key, f=lease.fence)
                await slots.release(lease)
                ev(e="end", k=key, ok=True)

        await asyncio.gather(*(one(i) for i in range(n_tasks)))
    out.close()


async def hold(url: str, log: str, mode: str) -> None:
    async with ClusterSlots(url, lease_ttl_s=2, claim_ttl_s=1, proc_ttl_s=3) as slots:
        if mode == "hold":
            lease = await slots.acquire("q")
            with open(log, "w") as f:
                f.write(json.dumps({"held": lease.fence}))
        elif mode == "once":
            lease = await slots.acquire("q", timeout_s=120)
            await asyncio.sleep(0.05)
            with open(log, "w") as f:
                f.write(json.dumps({"fence": lease.fence}))
            await slots.release(lease)
            return
        else:
            with open(log, "w") as f:
                f.write(json.dumps({"waiting": True}))
            await slots.acquire("q")
        await asyncio.sleep(3600)


if __name__ == "__main__":
    mode, url, logfile = sys.argv[1:4]
    if mode == "churn":
        ttl = float(sys.argv[6]) if len(sys.argv) > 6 else 30.0
        asyncio.run(churn(url, logfile, int(sys.argv[4]), int(sys.argv[5]), ttl))
    else:
        asyncio.run(hold(url, logfile, mode))
