"""`slotdeck serve --store redis://` admits GPUs over HTTP: two servers as two "hosts" (`SLOTDECK_HOST_ID`), each with
two declared 1000 MiB devices (`--device`), on one private Redis. Leases get their own host's devices, the
snapshot's `hosts` are the same from both servers, and each instance shows the API URL it serves."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve_redis import lease, running, serve

DEVICES = ("--device", "0:1000:A", "--device", "1:1000:B", "--default-limit", "10")
ADVERTISED = "https://gpu-alpha.example:9443/slotdeck"
BAD_URLS = (
    "ftp://x.example",
    "http://user:pw@x.example",
    "http://x.example/?a=1",
    "not a url",
    "http://x.example:0",
    "http://x.example\\@evil.example/",  # a browser's host is x.example, urllib's evil.example
    "http://x<script>.example/",
    "http://x.example/\x1b[2J",  # terminal control in `slotdeck status` and logs
)


@pytest.fixture
def gpu_servers(ns_url: str, tmp_path: Path) -> Iterator[list[httpx.Client]]:
    yield from running(
        [
            serve(ns_url, tmp_path / "alpha", *DEVICES, "--advertise-url", ADVERTISED, SLOTDECK_HOST_ID="alpha"),
            serve(ns_url, tmp_path / "beta", *DEVICES, SLOTDECK_HOST_ID="beta"),
        ]
    )


def hosts(client: httpx.Client) -> list[dict[str, Any]]:
    """The snapshot's hosts, as compared between servers (heartbeat times move with every tick)."""
    return [{k: v for k, v in h.items() if k != "last_heartbeat"} for h in client.get("/v1/snapshot").json()["hosts"]]


def test_http_gpu_leases_fit_on_their_servers_host(gpu_servers: list[httpx.Client]) -> None:
    a, b = gpu_servers
    first = lease(a, gpus=1, gpu_mem_mib=600)
    assert first.status_code == 201, first.text
    assert (first.json()["lease"]["host"], first.json()["lease"]["devices"]) == ("alpha", [0])
    second = lease(a, gpu_mem_mib=600)  # memory alone: one GPU
    assert (second.status_code, second.json()["lease"]["devices"]) == (201, [1]), second.text
    third = lease(a, gpus=1, gpu_mem_mib=600)
    assert third.status_code == 202, third.text  # 400 MiB left on each of alpha's GPUs
    assert (third.json()["waiter"]["gpus"], third.json()["waiter"]["gpu_mem_mib"]) == (1, 600)
    on_beta = lease(b, gpus=1, gpu_mem_mib=600)
    assert on_beta.status_code == 201, on_beta.text  # beta's GPUs are beta's own
    assert (on_beta.json()["lease"]["host"], on_beta.json()["lease"]["devices"]) == ("beta", [0])
    refused = lease(b, gpus=3)
    assert (refused.status_code, refused.json()["code"]) == (409, "no_fitting_device")

    deadline = time.monotonic() + 10
    while (shown := [hosts(a), hosts(b)])[0] != shown[1] or len(shown[0]) != 2 or not shown[0][1]["devices"]:
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    alpha, beta = shown[0]
    assert (alpha["host"], beta["host"], alpha["stale"], beta["stale"]) == ("alpha", "beta", False, False)
    assert [(d["name"], d["memory_reserved_mib"], d["leases"]) for d in alpha["devices"]] == [
        ("A", 600, [first.json()["lease"]["id"]]),
        ("B", 600, [second.json()["lease"]["id"]]),
    ]
    assert [d["memory_reserved_mib"] for d in beta["devices"]] == [600, 0]
    snap = b.get("/v1/snapshot").json()
    assert [d["host"] for d in snap["devices"]] == ["beta", "beta"]  # `devices`: the answering server's host
    urls = {i["host"]: i["url"] for i in snap["instances"]}
    assert urls == {"alpha": ADVERTISED, "beta": str(b.base_url).rstrip("/")}
    status = subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", "status", "--url", str(a.base_url).rstrip("/")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split()[1:6] for line in status.stdout.splitlines() if line.startswith(("alpha", "beta"))}
    assert rows == {"alpha": ["1", "2", "800", "MiB", "2"], "beta": ["1", "2", "1.4", "GiB", "1"]}, status.stdout
    renewed = b.post(f"/v1/leases/{first.json()['lease']['id']}/renew", json={"ttl_s": 30})
    assert (renewed.status_code, renewed.json()["host"], renewed.json()["devices"]) == (200, "alpha", [0])

    assert b.delete(f"/v1/leases/{first.json()['lease']['id']}").status_code == 204  # alpha's lease, through beta
    granted = lease(a, waiter_id=third.json()["waiter"]["id"], wait_s=10)
    assert granted.status_code == 201, granted.text
    assert (granted.json()["lease"]["host"], granted.json()["lease"]["devices"]) == ("alpha", [0])
    for client, held in ((a, second), (a, granted), (b, on_beta)):
        assert client.delete(f"/v1/leases/{held.json()['lease']['id']}").status_code == 204


@pytest.mark.parametrize(
    ("flags", "host_id", "named"),
    [
        *((["--advertise-url", url], "alpha", "advertise_url") for url in BAD_URLS),
        ([], "gpu:1", "SLOTDECK_HOST_ID"),
        ([], "gpu node", "SLOTDECK_HOST_ID"),
        ([], "gpu\x1b[2Jnode", "SLOTDECK_HOST_ID"),
        ([], "gpu\u200bnode", "SLOTDECK_HOST_ID"),  # invisible: two hosts that look alike
    ],
)
def test_a_bad_advertise_url_or_host_id_is_one_clear_line(
    flags: list[str], host_id: str, named: str, ns_url: str, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "embedded_service.cli", "serve", "--store", ns_url, "--no-auth", *flags]
    env = {"SLOTDECK_HOME": str(tmp_path), "SLOTDECK_HOST_ID": host_id}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
