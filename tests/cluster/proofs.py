"""What every multi-process run must show, from the workers' JSON-lines logs (mp_worker.py churn).

Events (time.monotonic(), system-wide on Linux): start (k, p: priority), enter (k, f: fence,
q: when Redis had it in line or null), leave (k, f), end (k, ok, err). ``check_run`` asserts:
each acquire ends exactly once; bodies at once never above ``limit``; fences unique and, per task,
increasing; FIFO within a priority (of two granted acquires of one priority, the one Redis had in
line before the other even started is granted first: lower fence); and returns the body intervals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from embedded_service.cluster.url import parse_cluster_url

# the deployment's durable keys: config, totals, counters, and the capped event stream and history (bounded)
ALLOWED = (
    "queues",
    "q:q:cfg",
    "q:q:st",
    "seq",
    "fence",
    "epoch",
    "opt",
    "tick",
    "events",
    "hist:seq",
    "hist:pts",
    "hist:base",
)


def read_events(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for p in paths if p.exists() for line in p.read_text().splitlines() if line.strip()]


def check_run(events: list[dict[str, Any]], limit: int, expected: int | None = None) -> list[tuple[float, float, int]]:
    starts = {e["k"]: e for e in events if e["e"] == "start"}
    ends = [e["k"] for e in events if e["e"] == "end"]
    assert sorted(ends) == sorted(starts), "an acquire ended twice or never"
    assert len(set(ends)) == len(ends)
    if expected is not None:
        assert len(starts) == expected
    enters = {e["k"]: e for e in events if e["e"] == "enter"}
    leaves = {e["k"]: e for e in events if e["e"] == "leave"}
    assert set(leaves) == set(enters)
    intervals = sorted((enters[k]["t"], leaves[k]["t"], enters[k]["f"]) for k in enters)
    # bodies at once never above the limit
    points = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals], key=lambda p: (p[0], p[1]))
    inside = peak = 0
    for _, d in points:
        inside += d
        peak = max(peak, inside)
    assert peak <= limit, f"{peak} bodies at once against a limit of {limit}"
    # fences unique, and increasing along each task's own sequence of grants
    fences = [f for _, _, f in intervals]
    assert len(set(fences)) == len(fences), "a fence was handed out twice"
    by_task: dict[str, list[tuple[float, int]]] = {}
    for k, e in enters.items():
        by_task.setdefault(k.rsplit("/", 1)[0], []).append((e["t"], e["f"]))
    for seq in by_task.values():
        ordered = [f for _, f in sorted(seq)]
        assert ordered == sorted(ordered), "a task's fences went down"
    # FIFO within a priority
    queued = [(enters[k]["q"], starts[k]["t"], starts[k]["p"], enters[k]["f"], k) for k in enters if enters[k]["q"]]
    for qa, _, pa, fa, ka in queued:
        for _, sb, pb, fb, kb in queued:
            if pa == pb and qa < sb:
                assert fa < fb, f"{kb} (fence {fb}) overtook {ka} (fence {fa}) of the same priority"
    return intervals


async def leftover_keys(url: str) -> set[str]:
    """Keys of the namespace beyond the deployment's durable ones (config, totals, counters)."""
    parsed = parse_cluster_url(url)
    r = aredis.Redis.from_url(parsed.redis_url, decode_responses=True)
    keys = set(await r.keys(parsed.prefix + "*"))
    await r.aclose()
    return keys - {f"{parsed.prefix}:{k}" for k in ALLOWED}
