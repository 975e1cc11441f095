"""Durable jobs: submit rate, end-to-end no-op job rate, claim rate, and the idle cost of many queues.

Run: .venv/bin/python benchmarks/jobs.py [--submits 20000] [--jobs 5000] [--waiting 20000] [--idle-queues 10000]

The idle figure starts a service with `--idle-queues` queues on a SQLite store in a child
process (benchmarks/idle_child.py), lets it settle, then reads its CPU time and RSS over
`--idle-s` seconds (goal: under 5% of one core).

Figures are printed, not judged: each SQLite figure is shown beside the
memory:// baseline measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from embedded_service import SlotService
from embedded_service.model import Job, JobKind
from embedded_service.stores import MemoryStore, SqliteStore, Store

SUBMITTERS = 200


def store_urls(where: Path, name: str) -> dict[str, str]:
    return {"memory": "memory://", "sqlite": f"sqlite:///{where / name}.db"}


async def submit_rate(url: str, total: int) -> tuple[float, str]:
    """Durable submits per second from many concurrent tasks (the queue is paused: submits only)."""
    svc = SlotService(store=url)
    svc.configure_queue("bench", limit=1, paused=True)

    @svc.task("noop", queue="bench")
    async def noop() -> None:
        return None

    async with svc:
        per_task = total // SUBMITTERS

        async def submitter() -> None:
            for _ in range(per_task):
                await svc.submit("noop")

        started = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        elapsed = time.perf_counter() - started
        commits = getattr(svc.store, "commits", None)
        note = f"{per_task * SUBMITTERS / commits:.0f} submits/commit" if commits else ""
    return per_task * SUBMITTERS / elapsed, note


async def job_rate(url: str, total: int, limit: int) -> float:
    """No-op jobs per second from submit to the stored `succeeded`, with `limit` slots."""
    svc = SlotService(store=url)
    svc.configure_queue("bench", limit=limit)

    @svc.task("noop", queue="bench")
    async def noop() -> None:
        return None

    async with svc:
        finished = 0
        all_done = asyncio.Event()

        async def count() -> None:
            nonlocal finished
            async for kind, fields in svc.events():
                if kind == "job" and fields["job"]["state"] == "succeeded":
                    finished += 1
                    if finished == total:
                        all_done.set()
                        return

        counter = asyncio.create_task(count())
        await asyncio.sleep(0)
        per_task = total // SUBMITTERS
        started = time.perf_counter()

        async def submitter() -> None:
            for _ in range(per_task):
                await svc.submit("noop")

        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        await asyncio.wait_for(all_done.wait(), 600)
        elapsed = time.perf_counter() - started
        await counter
    return total / elapsed


async def claim_rate(store: Store, waiting: int, rounds: int = 300) -> float:
    """Claims of the next 64 queued jobs per second, with `waiting` jobs queued (16 of them already held)."""
    await store.open()
    try:
        batch = [
            store.add_job(Job(id=f"j{n}", kind=JobKind.task, task="noop", queue="bench", created_at=0.0))
            for n in range(waiting)
        ]
        await asyncio.gather(*batch)
        skip = {f"j{n}" for n in range(16)}  # as the runner passes what it already holds
        started = time.perf_counter()
        for _ in range(rounds):
            claimed = await store.claim_jobs("bench", 64, now=1.0, skip=skip)
            assert len(claimed) == min(64, max(0, waiting - len(skip)))
        return rounds / (time.perf_counter() - started)
    finally:
        await store.close()


def idle_cost(where: Path, queues: int, seconds: float) -> tuple[float, float, float, float]:
    """(start-up s, CPU % of one core while idle, RSS MiB at the start and at the end of the idle period)."""
    child_script = Path(__file__).with_name("idle_child.py")
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, str(child_script), str(where / "idle.db"), str(queues)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready", "idle child did not start"
        startup = time.perf_counter() - started
        proc = psutil.Process(child.pid)
        time.sleep(3.0)  # let start-up work (first saves, first samples) pass
        rss_start = proc.memory_info().rss / 2**20
        cpu_start, wall_start = sum(proc.cpu_times()[:2]), time.perf_counter()
        time.sleep(seconds)
        cpu = sum(proc.cpu_times()[:2]) - cpu_start
        wall = time.perf_counter() - wall_start
        rss_end = proc.memory_info().rss / 2**20
        return startup, 100.0 * cpu / wall, rss_start, rss_end
    finally:
        child.kill()
        child.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--waiting", type=int, default=20_000)
    parser.add_argument("--limit", type=int, default=16, help="slots of the no-op job queue")
    parser.add_argument("--idle-queues", type=int, default=10_000, help="queues of the idle-cost figure (0: skip it)")
    parser.add_argument("--idle-s", type=float, default=20.0, help="seconds the idle cost is measured over")
    options = parser.parse_args()
    print(f"cores: {os.cpu_count()}  submitters: {SUBMITTERS}  SQLite: WAL, synchronous=FULL, one batched writer")
    with tempfile.TemporaryDirectory(prefix="slotdeck-bench-") as tmp:
        where = Path(tmp)
        rates = {}
        for name, url in store_urls(where, "submits").items():
            rates[name], note = await submit_rate(url, options.submits)
            print(f"durable submits/s      {name:<7} {rates[name]:>10,.0f}   {note}")
        print(f"  sqlite / memory      {rates['sqlite'] / rates['memory']:.2f}")

        for name, url in store_urls(where, "jobs").items():
            rates[name] = await job_rate(url, options.jobs, options.limit)
            print(f"no-op jobs/s (e2e)     {name:<7} {rates[name]:>10,.0f}   limit {options.limit}, {options.jobs} jobs")
        print(f"  sqlite / memory      {rates['sqlite'] / rates['memory']:.2f}")

        claims = {}
        for waiting in (80, options.waiting):
            for name, store in (
                ("memory", MemoryStore()),
                ("sqlite", SqliteStore(f"sqlite:///{where}/claim-{waiting}.db")),
            ):
                claims[name, waiting] = await claim_rate(store, waiting)
                print(f"claims of 64/s         {name:<7} {claims[name, waiting]:>10,.0f}   {waiting:,} waiting")
        for name in ("memory", "sqlite"):
            ratio = claims[name, options.waiting] / claims[name, 80]
            print(f"  {name} claim rate at {options.waiting:,} waiting / at ~0 waiting: {ratio:.2f}")

        if options.idle_queues:
            startup, cpu_pct, rss_start, rss_end = idle_cost(where, options.idle_queues, options.idle_s)
            print(
                f"idle, {options.idle_queues:,} queues (SQLite): start-up {startup:.1f} s, "
                f"CPU {cpu_pct:.1f}% of one core (goal < 5%) over {options.idle_s:.0f} s, "
                f"RSS {rss_start:.0f} -> {rss_end:.0f} MiB"
            )


if __name__ == "__main__":
    asyncio.run(main())
