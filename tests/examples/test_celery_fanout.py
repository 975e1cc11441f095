"""examples/celery_fanout does what its README promises: 40 calls on 2 workers x 8 processes,
the peak measured inside the tasks equals the cap (10), every call is answered, and the workers'
shutdown leaves no process registered in Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

RUN = Path(__file__).resolve().parents[2] / "examples" / "celery_fanout" / "run.py"


@pytest.mark.timeout(300)
def test_the_fan_out_reaches_the_cap_exactly_and_answers_every_call(private_redis: Any) -> None:
    env = {**os.environ, "FANOUT_REDIS": f"redis://127.0.0.1:{private_redis.port}", "PYTHONPATH": str(RUN.parents[2])}
    done = subprocess.run([sys.executable, str(RUN)], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    answers = re.search(r"^(\d+) answers from (\d+) worker processes in [\d.]+ s$", done.stdout, re.M)
    assert answers, done.stdout[-3000:]
    assert int(answers.group(1)) == 40 and int(answers.group(2)) > 10
    assert "peak: 10 LLM calls at once (cap 10, 2 workers x 8 processes)" in done.stdout.splitlines()
    # The workers' warm shutdown closed every process's cluster slots (worker_process_shutdown): none is left registered.
    with redis.Redis(host="127.0.0.1", port=private_redis.port) as r:
        assert r.zcard("{sd:fanout-example}:procs") == 0
