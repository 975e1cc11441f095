"""Durable jobs beside redis mode: `slotdeck serve --store redis://... --job-store sqlite:///...` processes.

Each server owns its own SQLite job store; every job runs only while it holds a global slot of its queue. The
jobs themselves log when they enter and leave (the monotonic clock is one clock for every process here), so the
overlap measured is what really ran at once, cluster-wide.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from ownership.serving import Serve, cli, home_env, jobs, wait_until

TTL_S = 3.0  # --cluster-lease-ttl-s of the servers that are killed


def serve(home: Path, ns_url: str, job_store: Path | None, *args: str) -> Serve:
    env = home_env(home, SLOTDECK_STORE=ns_url)
    if job_store is not None:
        env["SLOTDECK_JOB_STORE"] = f"sqlite:///{job_store}"  # the job store from the environment
    return Serve(env, *args).wait_serving()


def sleeper(log: Path, seconds: float, tag: str) -> list[str]:
    """A command job that appends `enter <monotonic> <pid> <tag>` and `leave <monotonic> <pid> <tag>` around a sleep."""
    script = (
        "import os, sys, time\n"
        "def note(what):\n"
        f"    with open({str(log)!r}, 'a') as f: f.write(f'{{what}} {{time.monotonic()}} {{os.getpid()}} {tag}\\n')\n"
        "note('enter')\n"
        f"time.sleep({seconds})\n"
        "note('leave')\n"
    )
    return [sys.executable, "-c", script]


def events(log: Path) -> list[tuple[float, int, str, int, str]]:
    """(monotonic, +1 enter / -1 leave, kind, pid, tag), in time order."""
    rows = []
    for line in log.read_text().splitlines() if log.exists() else []:
        kind, at, pid, tag = line.split()
        rows.append((float(at), 1 if kind == "enter" else -1, kind, int(pid), tag))
    return sorted(rows)


def peak(log: Path) -> int:
    """The most jobs inside at once (a leave at the same instant as an enter counts first)."""
    inside = most = 0
    for _, step, *_ in events(log):
        inside += step
        most = max(most, inside)
    return most


def submit(http: httpx.Client, argv: list[str], **fields: Any) -> str:
    answer = http.post("/v1/jobs", json={"argv": argv, "queue": "work", **fields})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def states(http: httpx.Client) -> dict[str, str]:
    return {j["id"]: j["state"] for j in jobs(http)}


def test_two_job_owners_on_one_redis_never_run_more_than_the_limit(
    ns_url: str, tmp_path: Path, started: list[Serve]
) -> None:
    a = serve(tmp_path / "a", ns_url, tmp_path / "a-jobs.db")
    started.append(a)
    b = serve(tmp_path / "b", ns_url, tmp_path / "b-jobs.db")
    started.append(b)
    log = tmp_path / "inside.log"
    with a.http() as ha, b.http() as hb:
        assert ha.put("/v1/queues/work", json={"limit": 2}).status_code == 200  # one queue of the deployment
        wait_until("b to know the queue", lambda: hb.get("/v1/queues/work").status_code == 200, 10)
        ids_a = [submit(ha, sleeper(log, 0.6, f"a{n}")) for n in range(4)]
        ids_b = [submit(hb, sleeper(log, 0.6, f"b{n}")) for n in range(4)]
        wait_until(
            "all 8 jobs to end",
            lambda: all(s in ("succeeded", "failed") for s in [*states(ha).values(), *states(hb).values()]),
            120,
        )
        assert states(ha) == dict.fromkeys(ids_a, "succeeded")  # each server lists its own store's jobs
        assert states(hb) == dict.fromkeys(ids_b, "succeeded")
        done = hb.get("/v1/queues/work").json()
    rows = events(log)
    assert sorted(tag for _, step, _, _, tag in rows if step == 1) == [
        *(f"a{n}" for n in range(4)),
        *(f"b{n}" for n in range(4)),
    ]
    assert peak(log) <= 2, rows  # never more than the limit inside, cluster-wide
    print(f"8 jobs on 2 servers, limit 2: at most {peak(log)} inside at once")
    assert done["in_use"] == 0 and done["totals"]["granted"] >= 8  # every job took (and gave back) a global slot
    assert a.stop() == 0 and b.stop() == 0
    assert "Traceback" not in a.output() + b.output()


def test_kill_9_of_a_job_owner_frees_its_slots_within_the_lease_ttl_and_the_other_goes_on(
    ns_url: str, tmp_path: Path, started: list[Serve]
) -> None:
    ttl = ("--cluster-lease-ttl-s", str(TTL_S))
    a = serve(tmp_path / "a", ns_url, tmp_path / "a-jobs.db", *ttl)
    started.append(a)
    b = serve(tmp_path / "b", ns_url, tmp_path / "b-jobs.db", *ttl)
    started.append(b)
    log = tmp_path / "inside.log"
    with a.http() as ha, b.http() as hb:
        assert ha.put("/v1/queues/work", json={"limit": 2}).status_code == 200
        wait_until("b to know the queue", lambda: hb.get("/v1/queues/work").status_code == 200, 10)
        # a's two jobs take both global slots; they end by themselves soon after a dies (their slots stay taken)
        ids_a = [submit(ha, sleeper(log, 1.0, f"a{n}"), max_attempts=2) for n in range(2)]
        wait_until("a's jobs to run", lambda: sum(step for _, step, *_ in events(log)) == 2, 30)
        ids_b = [submit(hb, sleeper(log, 0.2, f"b{n}")) for n in range(2)]
        wait_until("b's jobs to wait in Redis", lambda: hb.get("/v1/queues/work").json()["waiting"] == 2, 10)
        os.killpg(a.proc.pid, signal.SIGKILL)  # the owner and anything of its session
        killed_at = time.monotonic()
        a.proc.wait(10)
        wait_until("b's jobs to succeed", lambda: set(states(hb).values()) == {"succeeded"}, 60)
        entered = [at for at, step, _, _, tag in events(log) if step == 1 and tag.startswith("b")]
        waited = min(entered) - killed_at
        assert len(entered) == 2
        assert waited <= TTL_S + 2.0, waited  # the dead owner's slots came back within its lease TTL (+ one tick)
        assert peak(log) <= 2, events(log)
        print(f"b's first job started {waited:.2f} s after a was killed (lease TTL {TTL_S} s)")
        # a starts again on its own job store: the restart rules of jobs hold (interrupted, retried, then done)
        a2 = serve(tmp_path / "a", ns_url, tmp_path / "a-jobs.db", *ttl)
        started.append(a2)
        with a2.http() as ha2:
            wait_until("a's jobs to be retried", lambda: set(states(ha2).values()) == {"succeeded"}, 60)
            retried = {j["id"]: j["attempts"] for j in jobs(ha2)}
        assert retried == dict.fromkeys(ids_a, 2)
    assert sorted(ids_b) == sorted(states_of(b))
    assert peak(log) <= 2, events(log)
    assert a2.stop() == 0 and b.stop() == 0


def states_of(server: Serve) -> list[str]:
    with server.http() as http:
        return list(states(http))


def test_a_second_owner_of_a_job_store_is_refused_in_one_line(ns_url: str, tmp_path: Path, started: list[Serve]) -> None:
    a = serve(tmp_path / "a", ns_url, tmp_path / "jobs.db")
    started.append(a)
    env = home_env(tmp_path / "b", SLOTDECK_STORE=ns_url)
    second = cli("serve", "--port", "0", "--no-probes", "--job-store", f"sqlite:///{tmp_path / 'jobs.db'}", env=env)
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 7 and len(lines) == 1, second.stderr
    assert f"process {a.proc.pid}" in lines[0]
    bad = cli("serve", "--port", "0", "--no-probes", "--job-store", "redis://127.0.0.1:1/0", env=env)
    assert bad.returncode == 2 and "--job-store takes a store" in bad.stderr
    assert a.stop() == 0


def test_a_drain_lets_running_jobs_finish_and_starts_no_queued_one(
    ns_url: str, tmp_path: Path, started: list[Serve]
) -> None:
    a = serve(tmp_path / "a", ns_url, tmp_path / "a-jobs.db")
    started.append(a)
    log = tmp_path / "inside.log"
    with a.http() as ha:
        assert ha.put("/v1/queues/work", json={"limit": 1}).status_code == 200
        first = submit(ha, sleeper(log, 1.5, "first"))
        second = submit(ha, sleeper(log, 0.1, "second"))
        wait_until("the first job to run", lambda: events(log), 30)
    assert a.stop() == 0  # SIGTERM: the running job gets the grace period, the queued one does not start
    assert [(kind, tag) for _, _, kind, _, tag in events(log)] == [("enter", "first"), ("leave", "first")]
    again = serve(tmp_path / "a", ns_url, tmp_path / "a-jobs.db")
    started.append(again)
    with again.http() as http:
        wait_until("the queued job to run after the restart", lambda: states(http).get(second) == "succeeded", 30)
        assert {j["id"]: (j["state"], j["attempts"]) for j in jobs(http)}[first] == ("succeeded", 1)
    assert again.stop() == 0
