"""A real service process for the kill -9 test: submits forever, printing each id once acknowledged.

Run as `python crashy_service.py DB`. Eight submitters run at once; each
one's first job is long (it will be running when the process is killed),
with max_attempts 1 for even submitters and 2 for odd ones; later jobs are
short and wait behind them.
"""

from __future__ import annotations

import asyncio
import sys

from embedded_service import SlotService
from embedded_service.jobs import JobSettings


async def main(db: str) -> None:
    svc = SlotService(store=f"sqlite:///{db}", jobs=JobSettings(poll_s=0.05))
    svc.configure_queue("work", limit=8)

    @svc.task("nap", queue="work")
    async def nap(seconds: float, tag: str) -> str:
        await asyncio.sleep(seconds)
        return tag

    async def submitter(k: int) -> None:
        n = 0
        while True:
            job = await svc.submit("nap", [60.0 if n == 0 else 0.0, f"{k}-{n}"], max_attempts=1 + k % 2)
            sys.stdout.write(f"{job.id}\n")  # acknowledged: committed before submit returned
            sys.stdout.flush()
            n += 1

    async with svc:
        await asyncio.gather(*(submitter(k) for k in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
