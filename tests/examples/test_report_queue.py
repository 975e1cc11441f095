"""examples/report_queue does what its README promises: eight valid PDFs two at a time, and an
ops check with the monitoring exit codes against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from embedded_service.api.embedded import EmbeddedServer

HERE = Path(__file__).resolve().parents[2] / "examples" / "report_queue"


def test_run_sh_renders_every_report_and_the_check_follows_the_queue(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTDECK_")}
    env.update(PYTHON=sys.executable, REPORT_SECONDS="5")  # >= 10 s before fewer than 4 wait: the first check sees it
    command = ["bash", str(HERE / "run.sh"), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    first = next(line for line in lines if line.startswith(("OK", "WARNING", "CRITICAL", "UNKNOWN")))
    assert first.startswith("WARNING reports: 2/2 processing") and "(exit 1)" in lines
    drained = "OK reports: 0/2 processing, 0 queued, est. wait 0s; 8 done, 0 failed | queued=0 processing=0 failed=0"
    assert lines.count(drained) == 2
    pdfs = sorted((tmp_path / "reports").glob("*.pdf"))
    assert [p.name for p in pdfs] == [f"report-{i}.pdf" for i in range(1, 9)]
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF-1.4\n") and data.endswith(b"%%EOF\n") and b"Quarterly report" in data
    log = (tmp_path / "server.log").read_text()
    assert "sdk_" not in log  # tokens never reach the server's log
    served_by = json.loads((tmp_path / "slotdeck-home" / "local.json").read_text()).get("pid")
    if served_by is not None and psutil.pid_exists(served_by):
        psutil.Process(served_by).kill()  # not left behind for the rest of the run
        raise AssertionError("run.sh left its server running")


@pytest.fixture
def busy_queue() -> Iterator[dict[str, str]]:
    """A server whose `reports` queue has one slot held and two waiting."""
    with EmbeddedServer("memory://", probes=False, write_local=False, grace_s=0) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
            assert http.put("/v1/queues/reports", json={"limit": 1}).status_code == 200
            assert http.post("/v1/queues/reports/leases", json={"wait_s": 0}).status_code == 201
            for _ in range(2):
                assert http.post("/v1/queues/reports/leases", json={"wait_s": 0, "ttl_s": 300}).status_code == 202
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTDECK_")}
        yield {**env, "SLOTDECK_URL": server.url, "SLOTDECK_TOKEN": server.token or ""}


def _check(env: dict[str, str], *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, str(HERE / "check_queue.py"), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stderr == ""
    return done.returncode, done.stdout.strip()


def test_check_exit_codes_follow_the_monitoring_convention(busy_queue: dict[str, str]) -> None:
    env = busy_queue
    assert _check(env, "--queue", "reports", "--warn", "3", "--crit", "5")[0] == 0
    code, line = _check(env, "--queue", "reports", "--warn", "2", "--crit", "5")
    assert code == 1 and line.startswith("WARNING reports: 1/1 processing, 2 queued")
    assert _check(env, "--queue", "reports", "--warn", "1", "--crit", "2")[0] == 2
    code, line = _check(env, "--queue", "reports", "--until-drained", "--timeout", "0.5", "--every", "0.1")
    assert code == 2 and "not drained after 0.5s" in line
    code, line = _check({**env, "SLOTDECK_TOKEN": "sdk_wrong"}, "--queue", "reports")
    assert code == 3 and line.startswith("UNKNOWN reports: HTTP 401")
    code, line = _check(env, "--queue", "nosuch")
    assert code == 3 and "HTTP 404" in line
    code, line = _check(env, "--queue", "reports", "--url", "http://127.0.0.1:9")
    assert code == 3 and "cannot read" in line
