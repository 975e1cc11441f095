"""Child of benchmarks/jobs.py: a service with N queues on a SQLite store, idle (1 Hz sampler, job runner).

    python benchmarks/idle_child.py DB QUEUES

Prints "ready" once started, then idles until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embedded_service import SlotService


async def main(db: str, queues: int) -> None:
    svc = SlotService(store=f"sqlite:///{db}")
    for i in range(queues):
        svc.configure_queue(f"q{i}", limit=2)
    async with svc:
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
