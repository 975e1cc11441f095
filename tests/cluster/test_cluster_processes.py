"""Multi-process proofs with real processes on a private Redis (bounded in time)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from proofs import check_run, leftover_keys, read_events

from embedded_service.cluster import ClusterSlots

WORKER = Path(__file__).with_name("mp_worker.py")


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=dict(os.environ))


async def granted(slots: ClusterSlots) -> int:
    return int((await slots.snapshot())["queues"]["q"]["totals"]["granted"])


async def wait_file(path: Path, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never written"
        await asyncio.sleep(0.05)
    return json.loads(path.read_text())


async def test_eight_processes_four_tasks_limit_changes_and_pause(ns_url: str, tmp_path: Path) -> None:
    n_proc, n_tasks, rounds = 8, 4, 6
    marks: dict[str, float] = {}
    async with ClusterSlots(ns_url) as ctl:
        await ctl.configure_queue("q", limit=3)
        procs = [spawn("churn", ns_url, str(tmp_path / f"w{i}.log"), str(n_tasks), str(rounds)) for i in range(n_proc)]
        try:
            while (await ctl.snapshot())["queues"]["q"]["totals"]["granted"] < 40:
                await asyncio.sleep(0.02)
            await ctl.set_limit("q", 1)
            marks["one_from"] = await granted(ctl)
            await asyncio.sleep(0.5)
            marks["one_to"] = await granted(ctl)
            await ctl.set_limit("q", 3)
            await ctl.pause("q")
            marks["paused_from"] = await granted(ctl)
            await asyncio.sleep(0.5)
            marks["paused_to"] = await granted(ctl)
            await ctl.resume("q")
            for p in procs:
                assert await asyncio.to_thread(p.wait, 180) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        snap = (await ctl.snapshot())["queues"]["q"]
    events = read_events([tmp_path / f"w{i}.log" for i in range(n_proc)])
    total = n_proc * n_tasks * rounds
    intervals = check_run(events, limit=3, expected=total)
    assert all(e["ok"] for e in events if e["e"] == "end")
    assert len(intervals) == total
    # fences are consecutive in one epoch, so a fence gives its grant's rank in the deployment
    fences = sorted(f for _, _, f in intervals)
    assert fences == list(range(fences[0], fences[0] + total))
    rank = {f: f - fences[0] + 1 for f in fences}
    # granted while the limit was 1: every earlier grant's body had ended before it entered
    # (holders are not preempted, so such a grant waits until all of them released)
    under_one = [(s, rank[f]) for s, _, f in intervals if marks["one_from"] < rank[f] <= marks["one_to"]]
    assert under_one
    for s, r in under_one:
        assert all(e2 < s for _, e2, f2 in intervals if rank[f2] < r)
    # nothing granted while paused
    assert marks["paused_to"] == marks["paused_from"]
    assert snap["in_use"] == 0 and snap["waiting"] == 0 and snap["marks"]["in_use"] == 3
    assert snap["totals"]["granted"] == total == snap["totals"]["released"]
    assert await leftover_keys(ns_url) == set()


async def test_sigkill_of_a_holder_process_frees_its_slot(ns_url: str, tmp_path: Path) -> None:
    async with ClusterSlots(ns_url) as slots:
        await slots.configure_queue("q", limit=1)
        victim = spawn("hold", ns_url, str(tmp_path / "held.json"))
        try:
            held = await wait_file(tmp_path / "held.json")
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=30)
            # No other traffic: only this waiter's ticks can reclaim (lease TTL 2 s + one tick).
            lease = await slots.acquire("q", timeout_s=20)
        finally:
            if victim.poll() is None:
                victim.kill()
        assert lease.fence > held["held"]
        assert (await slots.snapshot())["queues"]["q"]["totals"]["expired"] == 1
        await slots.release(lease)
        # the dead process's record goes once its heartbeat TTL (3 s) passes: our ticks reap it
        deadline = time.monotonic() + 60
        while await slots._r.zcard(f"{slots._P}:procs") > 1:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, await leftover_keys(ns_url)
            await asyncio.sleep(0.1)
    assert await leftover_keys(ns_url) == set()


async def test_sigkill_of_a_waiting_process_does_not_stall_the_line(ns_url: str, tmp_path: Path) -> None:
    async with ClusterSlots(ns_url) as slots:
        await slots.configure_queue("q", limit=1)
        first = await slots.acquire("q")
        victim = spawn("wait", ns_url, str(tmp_path / "w.json"))
        try:
            await wait_file(tmp_path / "w.json")
            while (await slots.snapshot())["queues"]["q"]["waiting"] < 1:
                await asyncio.sleep(0.02)
            behind = asyncio.create_task(slots.acquire("q", timeout_s=30))
            while (await slots.snapshot())["queues"]["q"]["waiting"] < 2:
                await asyncio.sleep(0.02)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=30)
            await slots.release(first)  # the grant goes to the dead process first (claim TTL 1 s)
            lease = await asyncio.wait_for(behind, 40)
        finally:
            if victim.poll() is None:
                victim.kill()
        totals = (await slots.snapshot())["queues"]["q"]["totals"]
        assert totals["expired"] + totals["abandoned"] == 1
        await slots.release(lease)
        # the dead process's record and inbox go once its heartbeat TTL (3 s) passes: our ticks reap it
        deadline = time.monotonic() + 60
        while any("in:" in k for k in await leftover_keys(ns_url)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    assert await leftover_keys(ns_url) == set()


async def test_fifo_across_processes(ns_url: str, tmp_path: Path) -> None:
    async with ClusterSlots(ns_url) as slots:
        await slots.configure_queue("q", limit=1)
        first = await slots.acquire("q")
        procs = []
        try:
            for i in range(4):  # enqueue one process at a time, so the arrival order is known
                procs.append(spawn("once", ns_url, str(tmp_path / f"o{i}.json")))
                while (await slots.snapshot())["queues"]["q"]["waiting"] < i + 1:
                    assert procs[-1].poll() is None
                    await asyncio.sleep(0.02)
            await slots.release(first)
            for p in procs:
                assert await asyncio.to_thread(p.wait, 120) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    fences = [json.loads((tmp_path / f"o{i}.json").read_text())["fence"] for i in range(4)]
    assert fences == [first.fence + 1 + i for i in range(4)]
    assert await leftover_keys(ns_url) == set()
