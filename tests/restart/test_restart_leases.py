"""kill -9 and restart a real server while remote holder processes loop on a limit-3 queue.

Bodies running at once never exceed the limit, fences only grow across restarts, the server accepts the
renewal of leases it granted before the restart, and `slot()` never raises at exit.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from serving import Server, clean_env

HOLDER = Path(__file__).with_name("remote_holder.py")
LIMIT = 3
HOLDERS = 6
RESTARTS = 4


def parse(log: Path) -> tuple[list[tuple[float, int, str]], list[tuple[float, str]], list[str]]:
    enters, leaves, problems = [], [], []
    for line in log.read_text().splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "enter":
            at, fence, lease = rest.split()
            enters.append((float(at), int(fence), lease))
        elif kind == "leave":
            at, lease = rest.split()
            leaves.append((float(at), lease))
        else:
            problems.append(line)
    return enters, leaves, problems


def enter_count(log: Path) -> int:
    return log.read_text().count("enter ") if log.exists() else 0


def most_at_once(enters: list[tuple[float, int, str]], leaves: list[tuple[float, str]]) -> int:
    events = sorted([(at, 1) for at, _, _ in enters] + [(at, -1) for at, _ in leaves], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.timeout(300)
def test_kill_9_and_restart_never_break_the_limit_or_reuse_a_fence(tmp_path: Path) -> None:
    server = Server(tmp_path / "home", "--default-limit", str(LIMIT), auth=True)
    token = server.create_token("holders", "client")  # renewing a taken-back lease needs its holder's token
    log, stop = tmp_path / "bodies.log", tmp_path / "stop"
    holders: list[subprocess.Popen[bytes]] = []
    epochs: list[tuple[float, float]] = []  # (killed at, ready again at), wall clock
    try:
        server.start()
        env = clean_env(tmp_path / "home")
        for _ in range(HOLDERS):
            holders.append(subprocess.Popen([sys.executable, str(HOLDER), server.url, str(log), str(stop), token], env=env))
        for _ in range(RESTARTS):
            deadline = time.monotonic() + 60
            entered = enter_count(log)
            # wait for some bodies to start in this epoch, so that some run across the kill
            while enter_count(log) < entered + 2 * LIMIT:
                assert time.monotonic() < deadline, "holders made no progress"
                time.sleep(0.1)
            killed = time.time()
            server.kill9()
            server.start()
            epochs.append((killed, time.time()))
        time.sleep(3)
    finally:
        stop.touch()
        for holder in holders:
            try:
                holder.wait(60)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
        server.stop()

    enters, leaves, problems = parse(log)
    assert len(enters) >= RESTARTS * 2 * LIMIT
    assert most_at_once(enters, leaves) <= LIMIT
    fences = [fence for _, fence, _ in enters]
    assert len(set(fences)) == len(fences), "a fence was handed out twice"
    for killed, ready in epochs:
        before = [fence for at, fence, _ in enters if at < killed]
        after = [fence for at, fence, _ in enters if at > ready]
        assert before and after
        assert min(after) > max(before), "fences went back after a restart"
    assert problems == [], problems  # no lost lease (renewals accepted after a restart), no error at slot() exit
