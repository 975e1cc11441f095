"""HostProbe against this machine's real processes (psutil, no mocks)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from embedded_service.probes import HostProbe

# A parent that starts a busy child holding ~64 MiB, prints the child's pid, then waits.
TREE = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "b = bytearray(64 * 1024 * 1024)\\nwhile True: b[0] = (b[0] + 1) % 256"])
print(child.pid, flush=True)
child.wait()
"""


@pytest.fixture
def job_tree() -> Iterator[tuple[subprocess.Popen[str], int]]:
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        yield parent, child_pid
    finally:
        with contextlib.suppress(ProcessLookupError):  # some tests end the tree themselves
            os.killpg(parent.pid, 9)
        parent.wait()


def busy_for(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_sample_gives_real_host_figures() -> None:
    host = HostProbe().sample()
    memory = psutil.virtual_memory()
    assert host.cpu_count == psutil.cpu_count()
    assert host.memory_total_mib == memory.total // (1024 * 1024)
    assert host.memory_used_mib is not None and 0 < host.memory_used_mib < host.memory_total_mib
    assert host.cpu_pct is None or 0.0 <= host.cpu_pct <= 100.0
    assert host.load_1m is not None and host.load_1m >= 0.0


def test_cpu_percent_is_real_from_any_thread() -> None:
    """The service samples from whichever pool thread is free; a fresh thread must still see the busy time."""
    probe = HostProbe()
    busy_for(0.3)  # this thread is busy between the two readings
    with ThreadPoolExecutor(max_workers=1) as pool:  # a thread that never sampled before
        host = pool.submit(probe.sample).result()
    assert host.cpu_pct is not None and host.cpu_pct > 0.0


def test_process_tree_usage_counts_descendants(job_tree: tuple[subprocess.Popen[str], int]) -> None:
    parent, child_pid = job_tree
    probe = HostProbe()
    first = probe.process_tree_usage(parent.pid)
    assert first is not None
    assert probe.tree_pids(parent.pid) == {parent.pid, child_pid}
    root_rss_mib = psutil.Process(parent.pid).memory_info().rss / (1024 * 1024)
    time.sleep(0.3)  # the child spins meanwhile
    cpu_pct, rss_mib = probe.process_tree_usage(parent.pid) or (None, None)
    assert cpu_pct is not None and cpu_pct > 0.0  # cached Process objects: a real delta, not a first reading
    assert rss_mib is not None and rss_mib > root_rss_mib + 50  # the child's 64 MiB is counted


def test_process_tree_usage_of_a_gone_process_is_none(job_tree: tuple[subprocess.Popen[str], int]) -> None:
    parent, _ = job_tree
    probe = HostProbe()
    assert probe.process_tree_usage(parent.pid) is not None
    os.killpg(parent.pid, 9)
    parent.wait()
    assert probe.process_tree_usage(parent.pid) is None
    assert probe.tree_pids(parent.pid) == frozenset()


def test_sample_forgets_trees_of_exited_processes(job_tree: tuple[subprocess.Popen[str], int]) -> None:
    parent, _ = job_tree
    probe = HostProbe()
    probe.process_tree_usage(parent.pid)
    assert parent.pid in probe.tree_pids(parent.pid)
    os.killpg(parent.pid, 9)
    parent.wait()
    probe.sample()
    assert probe.tree_pids(parent.pid) == frozenset()


def test_unknown_pid_is_none() -> None:
    pid = 2**22 + 12345  # above Linux's pid_max
    assert HostProbe().process_tree_usage(pid) is None
