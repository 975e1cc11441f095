"""Cluster mode (ClusterSlots on Redis) benchmark, one run, side by side.

1. Hand-off latency across 2 processes (limit 1, each process 2 tasks taking the slot in turn):
   time from the holder's last instant before release to the next holder's first instant in its body,
   matched by fence (consecutive fences), both stamped with time.monotonic() (system-wide on Linux).
   Also the share of hand-offs that went to the waiter first in line (earliest client-side start
   among those waiting at the release), and the Redis calls per grant in that run (INFO
   commandstats: a figure that the machine's load does not blur, unlike the latencies).
2. Uncontended acquire+release pairs/s in one process: ClusterSlots vs in-process SlotService vs a
   simple polling Redis semaphore (INCR, over the limit DECR + sleep 10 ms; release DECR).

Starts a private redis-server (no persistence) on a free loopback port; needs the `redis` extra.
Usage: python benchmarks/cluster.py [--rounds 300] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from redisproc import PrivateRedis  # noqa: E402

from embedded_service import SlotService  # noqa: E402
from embedded_service.cluster import ClusterSlots  # noqa: E402


async def handoff_worker(url: str, log: str, rounds: int, tasks: int) -> None:
    events: list[dict[str, object]] = []
    async with ClusterSlots(url) as slots:

        async def one(i: int) -> None:
            me = f"{slots.proc_id}/{i}"
            for _ in range(rounds):
                start = time.monotonic()
                lease = await slots.acquire("h", owner=me, timeout_s=60)
                enter = time.monotonic()
                await asyncio.sleep(0.001)
                rel = time.monotonic()
                await slots.release(lease)
                events.append({"who": me, "start": start, "enter": enter, "rel": rel, "f": lease.fence})

        await asyncio.gather(*(one(i) for i in range(tasks)))
    Path(log).write_text(json.dumps(events))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def redis_calls(url: str, reset: bool = False) -> dict[str, int]:
    """Calls per command since the last reset (``reset``: start counting now)."""
    import redis.asyncio as aredis

    r = aredis.Redis.from_url(url.split("?")[0], decode_responses=True)
    try:
        if reset:
            await r.config_resetstat()
            return {}
        stats = await r.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    finally:
        await r.aclose()


async def handoff(url: str, rounds: int, tmp: Path) -> None:
    async with ClusterSlots(url) as ctl:
        await ctl.configure_queue("h", limit=1)
    await redis_calls(url, reset=True)
    procs = [
        subprocess.Popen([sys.executable, __file__, "--worker", url, str(tmp / f"h{i}.json"), str(rounds), "2"])
        for i in range(2)
    ]
    for p in procs:
        p.wait(timeout=600)
    calls = await redis_calls(url)
    ev = [e for i in range(2) for e in json.loads((tmp / f"h{i}.json").read_text())]
    by_fence = {e["f"]: e for e in ev}
    lat, first, counted = [], 0, 0
    for f, e in sorted(by_fence.items()):
        nxt = by_fence.get(f + 1)
        if nxt is None:
            continue
        waiting = [w for w in ev if w["start"] < e["rel"] < w["enter"]]
        if not waiting:
            continue  # nobody was waiting: not a hand-off
        lat.append((nxt["enter"] - e["rel"]) * 1000)
        counted += 1
        if min(waiting, key=lambda w: w["start"])["who"] == nxt["who"]:
            first += 1
    print(f"hand-off across 2 processes x 2 tasks, limit 1, {len(ev)} grants, {counted} hand-offs")
    print(f"  latency p50 {statistics.median(lat):6.2f} ms   p99 {pct(lat, 99):6.2f} ms   (prototype: 0.65 / 3.6 ms)")
    print(f"  to the waiter first in line: {100 * first / max(1, counted):.1f}%   (goal >= 99%)")
    inner = sum(v for k, v in calls.items() if k not in ("fcall", "blpop", "function|load", "config|resetstat"))
    print(
        f"  Redis calls per grant: FCALL {calls.get('fcall', 0) / len(ev):.2f}, BLPOP {calls.get('blpop', 0) / len(ev):.2f},"
        f" commands run inside the functions {inner / len(ev):.1f}"
    )


async def pairs(url: str, seconds: float) -> None:
    import redis.asyncio as aredis

    async def rate(body) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await body()
            n += 1
        return n / (time.perf_counter() - t0)

    async with ClusterSlots(url) as slots:
        await slots.configure_queue("u", limit=1)

        async def cluster_pair() -> None:
            async with slots.slot("u"):
                pass

        r_cluster = await rate(cluster_pair)
    async with SlotService(sample_interval_s=3600) as svc:
        svc.configure_queue("u", limit=1)

        async def svc_pair() -> None:
            async with svc.slot("u"):
                pass

        r_svc = await rate(svc_pair)
    r = aredis.Redis.from_url(url.split("?")[0])

    async def poll_pair() -> None:
        while await r.incr("bench:sem") > 1:
            await r.decr("bench:sem")
            await asyncio.sleep(0.01)
        await r.decr("bench:sem")

    r_poll = await rate(poll_pair)
    await r.aclose()
    print(f"uncontended acquire+release pairs/s in one process, {seconds:.0f} s each")
    print(f"  ClusterSlots (Redis functions)   {r_cluster:10,.0f}/s")
    print(f"  in-process SlotService.slot      {r_svc:10,.0f}/s")
    print(f"  polling Redis semaphore (INCR)   {r_poll:10,.0f}/s")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        server = PrivateRedis(Path(d))
        server.start()
        try:
            url = server.url("bench")
            await handoff(url, args.rounds, Path(d))
            await pairs(url, args.seconds)
        finally:
            server.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        asyncio.run(handoff_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
    else:
        asyncio.run(main())
