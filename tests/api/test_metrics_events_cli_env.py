"""Prometheus per-device gauges, counters and hold histograms; job events and snapshot rate on /v1/events;
the CLI finding its server through SLOTDECK_URL / SLOTDECK_TOKEN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from embedded_service.api.embedded import EmbeddedServer
from embedded_service.client import Client
from embedded_service.model import DeviceSpec
from tests.api.conftest import Running
from tests.api.test_routes import _read_events


def test_metrics_carry_device_gauges_counters_and_hold_histograms() -> None:
    devices = [DeviceSpec(index=0, name="cfg", memory_total_mib=8_000)]
    with EmbeddedServer("memory://", probes=False, write_local=False, grace_s=0, devices=devices) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
            lease = http.post("/v1/queues/default/leases", json={"gpus": 1, "gpu_mem_mib": 3_000}).json()["lease"]
            held = http.get("/metrics").text
            http.delete(f"/v1/leases/{lease['id']}")
            after = http.get("/metrics").text
    assert 'slotdeck_gpu_memory_total_mib{gpu="0",name="cfg"} 8000.0' in held
    assert 'slotdeck_gpu_memory_reserved_mib{gpu="0",name="cfg"} 3000.0' in held
    assert 'slotdeck_gpu_memory_reserved_mib{gpu="0",name="cfg"} 0.0' in after
    assert 'slotdeck_queue_granted_total{queue="default"} 1.0' in after
    assert 'slotdeck_queue_released_total{queue="default"} 1.0' in after
    assert 'slotdeck_hold_seconds_count{end="released",queue="default"} 1.0' in after


def test_events_carry_job_states_and_snapshots_at_the_configured_rate(running: Running) -> None:
    with running.http("client") as c:
        job = c.post("/v1/jobs", json={"argv": [sys.executable, "-c", "pass"]}).json()
        deadline = time.monotonic() + 30
        while c.get(f"/v1/jobs/{job['id']}").json()["state"] != "succeeded":
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.05)
        replay = _read_events(c, 10, {"Last-Event-ID": "old-0"})  # a snapshot, what the server kept, snapshots
        jobs = [e[2]["job"] for e in replay if e[1] == "job" and e[2]["job"]["id"] == job["id"]]
        states = [j["state"] for j in jobs]
        assert [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]] == ["queued", "running", "succeeded"]
        assert any(j["state"] == "running" and j["pid"] for j in jobs), "watchers learn the process id while it runs"
        started = time.monotonic()
        assert {e[1] for e in _read_events(c, 6)} == {"snapshot"}
    assert time.monotonic() - started < 2.0  # 6 snapshots at the fixture's 20 Hz; the 2 Hz default would take 2.5 s


def test_events_of_only_the_asked_types_live_and_replayed(running: Running) -> None:
    """A dashboard asks for what it draws; a busy server's lease events are not sent to it."""
    received: list[str] = []
    stream_open = threading.Event()

    def watch() -> None:
        with Client(running.url, running.tokens["viewer"]) as viewer:
            for event in viewer.events(types=["snapshot", "audit"]):
                stream_open.set()
                received.append(event.type)
                if event.type == "audit":
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert stream_open.wait(10), "the stream did not open"
    with running.http("operator") as op:
        for _ in range(20):
            op.delete(f"/v1/leases/{op.post('/v1/queues/default/leases', json={}).json()['lease']['id']}")
        op.patch("/v1/queues/default", json={"limit": 2})
        watcher.join(10)
        assert not watcher.is_alive(), f"no audit event came: {received}"
        assert set(received) == {"snapshot", "audit"}  # 40 lease events were published meanwhile
        with Client(running.url, running.tokens["viewer"]) as viewer:
            first = next(iter(viewer.events("old-0", types=["audit"])))  # all kept: leases first, then the audit
        assert (first.type, first.data["action"]) == ("audit", "queue.update")
        refused = op.get("/v1/events", params={"types": "lease,gossip"})
        assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["query", "types"]


def test_cli_takes_url_and_token_from_the_environment(running: Running, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTDECK_")}
    env |= {"SLOTDECK_HOME": str(tmp_path), "SLOTDECK_URL": running.url, "SLOTDECK_TOKEN": running.tokens["viewer"]}

    def status(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "embedded_service.cli", "status", "--json"]
        return subprocess.run(command, env=env | extra, capture_output=True, text=True, timeout=60)

    shown = status({})
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["queues"][0]["config"]["name"] == "default"
    assert status({"SLOTDECK_TOKEN": "sdk_wrong"}).returncode == 4


def test_a_stream_can_ask_for_fewer_snapshots_and_gets_the_newest(running: Running) -> None:
    """A dashboard watching a server out of focus asks for one snapshot per interval; the server skips the rest
    (20 Hz here) instead of queueing them, and refuses a pace outside 0-10 s."""
    with running.http("viewer") as v:
        started = time.monotonic()
        with v.stream("GET", "/v1/events", params={"types": "snapshot", "snapshot_interval_s": 0.5}) as stream:
            seqs = [json.loads(line[len("data: ") :])["seq"] for line in _data_lines(stream.iter_lines(), 3)]
        took = time.monotonic() - started
        assert took >= 1.0, f"3 snapshots (now, +0.5 s, +1 s) came in {took:.2f} s"
        assert seqs == sorted(seqs)
        for bad in ("-1", "10.5", "nan", "soon"):
            refused = v.get("/v1/events", params={"snapshot_interval_s": bad})
            assert refused.status_code == 422, bad
            assert refused.json()["errors"][0]["loc"] == ["query", "snapshot_interval_s"]


def _data_lines(lines: Iterator[str], count: int) -> list[str]:
    found: list[str] = []
    for line in lines:
        if line.startswith("data: "):
            found.append(line)
            if len(found) == count:
                break
    return found
