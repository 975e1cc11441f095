"""`python -m embedded_service.probes`, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil


def test_prints_json_and_exits_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "embedded_service.probes"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"devices", "gpu_probe", "host"}
    assert report["host"]["cpu_count"] == psutil.cpu_count()
    if report["devices"]:
        assert all(d["source"] == "nvml" for d in report["devices"])
    else:
        assert report["gpu_probe"]  # no GPU: the reason is said, in one line
        assert "\n" not in report["gpu_probe"]
