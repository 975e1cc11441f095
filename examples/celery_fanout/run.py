"""One command: two Celery workers (-c 8 each) fan out FANOUT_TASKS fake LLM calls under one global cap.

    .venv/bin/python examples/celery_fanout/run.py

Sets the cap (queue ``llm``, FANOUT_CAP, 10) in Redis, starts the workers, sends a group of
FANOUT_TASKS (40) ``call_llm`` tasks, waits for every answer, prints the peak measured inside
the tasks, and stops the workers. Needs Redis at FANOUT_REDIS (redis://127.0.0.1:6379).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from celery import group

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tasks import STORE, call_llm, measure  # noqa: E402

from embedded_service.cluster import BlockingClusterSlots  # noqa: E402

CAP = int(os.environ.get("FANOUT_CAP", "10"))
TASKS = int(os.environ.get("FANOUT_TASKS", "40"))
WORKERS, CONCURRENCY = 2, 8


def start_worker(i: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), str(HERE)])}
    cmd = [sys.executable, "-m", "celery", "-A", "tasks", "--quiet", "worker", "-P", "prefork", "-c", str(CONCURRENCY)]
    cmd += ["-n", f"fanout{i}@%h", "-l", "warning", "--without-gossip", "--without-mingle"]
    return subprocess.Popen(cmd, cwd=HERE, env=env, start_new_session=True)


def main() -> int:
    with BlockingClusterSlots(STORE) as slots:
        slots.configure_queue("llm", limit=CAP)
    measure.delete("fanout-example:running", "fanout-example:peak")
    workers = [start_worker(i) for i in range(WORKERS)]
    try:
        t0 = time.monotonic()
        answers = group(call_llm.s(f"document {i}") for i in range(TASKS)).apply_async().get(timeout=600)
        took = time.monotonic() - t0
    finally:
        for w in workers:
            w.terminate()  # warm shutdown: running tasks finish and release their slots
        for w in workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
    peak = int(measure.get("fanout-example:peak") or 0)
    pids = {a.rsplit("pid ", 1)[1].rstrip(")") for a in answers}
    print(f"{len(answers)} answers from {len(pids)} worker processes in {took:.1f} s")
    print(f"peak: {peak} LLM calls at once (cap {CAP}, {WORKERS} workers x {CONCURRENCY} processes)")
    return 0 if len(answers) == TASKS else 1


if __name__ == "__main__":
    raise SystemExit(main())
