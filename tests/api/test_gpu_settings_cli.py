"""GPU settings of `slotdeck serve` (declared devices, --gpus, budget; TOML and flags), placement over the API
and the CLI, and what `slotdeck status` shows of each GPU."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from embedded_service.config import ConfigError, load_settings, parse_device
from embedded_service.model import DeviceSpec

from .test_cli_and_server import _serve, home, slotdeck

__all__ = ["home"]  # the fixture, used by name below


def test_serve_with_declared_devices_and_a_gpu_selection(home: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "slotdeck.toml"
    config.write_text(
        "[server]\ngpu_memory_budget_mib = 4000\n"
        'devices = [{index = 0, name = "Declared A", memory_total_mib = 16000}, {index = 1, name = "Declared B"}]\n'
    )
    env = {**home, "CUDA_VISIBLE_DEVICES": "0"}  # the flag below wins over the inherited variable
    proc, _url = _serve(env, "--config", str(config), "--gpus", "1")
    try:
        snap = json.loads(slotdeck("status", "--json", env=env).stdout)
        assert [(d["index"], d["name"], d["health"]) for d in snap["devices"]] == [(1, "Declared B", "unified")]
        assert snap["devices"][0]["memory_budget_mib"] == 4000
        assert snap["gpu_selection"] == "--gpus 1: GPUs 1 of 2"
        text = slotdeck("status", env=env).stdout
        assert "HEALTH" in text and "unified" in text and "GPU selection: --gpus 1: GPUs 1 of 2" in text

        placed = slotdeck("placement", "default", "pack", env=env)
        assert (placed.returncode, placed.stdout.strip()) == (0, "default: placement pack")
        queues = json.loads(slotdeck("status", "--json", env=env).stdout)["queues"]
        assert queues[0]["config"]["placement"] == "pack"
        bad = slotdeck("placement", "default", "random", env=env)
        assert bad.returncode == 2 and "invalid choice" in bad.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_a_bad_device_declaration_is_a_one_line_usage_error(home: dict[str, str]) -> None:
    bad = slotdeck("serve", "--port", "0", "--no-probes", "--device", "zero:lots", env=home)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "slotdeck: --device takes INDEX[:MEMORY_MIB[:NAME]] (e.g. 0:40960:A100), not 'zero:lots'"


def test_gpu_settings_from_flags_env_and_file(tmp_path: Path) -> None:
    assert parse_device("0:40960:A100") == DeviceSpec(index=0, memory_total_mib=40960, name="A100")
    assert parse_device("3") == DeviceSpec(index=3)
    with pytest.raises(ConfigError):
        parse_device("-1:x")
    env = {"SLOTDECK_DEVICES": '[{"index": 0, "memory_total_mib": 8000}]', "SLOTDECK_GPUS": "GPU-abc"}
    settings = load_settings({}, env=env)
    assert settings.gpu_service_kwargs() == {
        "devices": [DeviceSpec(index=0, memory_total_mib=8000)],
        "visible_gpus": "GPU-abc",
        "gpu_memory_budget_mib": None,
        "gpu_stale_after_s": 10.0,
    }
    flags = load_settings({"devices": [parse_device("2:8000:Extra")]}, env=env)  # a flag's list replaces the rest
    assert flags.devices == [DeviceSpec(index=2, memory_total_mib=8000, name="Extra")]
    with pytest.raises(ConfigError, match="JSON"):
        load_settings({}, env={"SLOTDECK_DEVICES": "0:8000"})
    with pytest.raises(ConfigError, match="devices"):
        load_settings({}, env={"SLOTDECK_DEVICES": '[{"index": 0, "memory": 1}]'})


def test_the_readmes_gpu_settings_load(tmp_path: Path) -> None:
    import re

    readme = Path(__file__).resolve().parents[2] / "README.md"
    [block] = [b for b in re.findall(r"^```toml\n(.*?)^```", readme.read_text(), flags=re.S | re.M) if "gpus =" in b]
    config = tmp_path / "gpu.toml"
    config.write_text(block)
    settings = load_settings({}, env={}, config_file=config)
    assert (settings.gpus, settings.gpu_memory_budget_mib, settings.devices[0].memory_total_mib) == ("0,1", 60000, 40960)


def test_metrics_carry_free_memory_and_health_per_gpu() -> None:
    import httpx

    from embedded_service.api.embedded import EmbeddedServer

    devices = [DeviceSpec(index=0, name="cfg", memory_total_mib=8_000), DeviceSpec(index=1, name="uni")]
    with EmbeddedServer("memory://", probes=False, write_local=False, grace_s=0, devices=devices) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
            lease = http.post("/v1/queues/default/leases", json={"gpus": 1, "gpu_mem_mib": 3_000}).json()["lease"]
            text = http.get("/metrics").text
            refused = http.post("/v1/queues/default/leases", json={"gpus": 2, "gpu_mem_mib": 1_000})
            http.delete(f"/v1/leases/{lease['id']}")
    assert 'slotdeck_gpu_memory_free_mib{gpu="0",name="cfg"} 5000.0' in text
    assert 'slotdeck_gpu_health{gpu="0",health="ok",name="cfg"} 1.0' in text
    assert 'slotdeck_gpu_health{gpu="1",health="unified",name="uni"} 1.0' in text
    assert refused.status_code == 409 and "unified memory" in refused.json()["detail"]


def test_placement_over_the_api(running) -> None:  # type: ignore[no-untyped-def]
    with running.http("operator") as op, running.http("viewer") as viewer:
        assert op.put("/v1/queues/train", json={"limit": 2}).json()["placement"] == "spread"
        assert op.patch("/v1/queues/train", json={"placement": "pack"}).json()["placement"] == "pack"
        assert [q["placement"] for q in viewer.get("/v1/queues").json() if q["name"] == "train"] == ["pack"]
        bad = op.patch("/v1/queues/train", json={"placement": "random"})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        assert viewer.patch("/v1/queues/train", json={"placement": "spread"}).status_code == 403
