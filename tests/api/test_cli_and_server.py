"""`slotdeck` as a user runs it: real processes, a real SQLite store, SIGTERM, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from embedded_service.config import ConfigError, load_settings
from embedded_service.localmode import read_local_endpoint


def slotdeck(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTDECK_", "MAX_CONCURRENT"))}
    env["SLOTDECK_HOME"] = str(tmp_path / "home")
    return env


def _serve(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    local = Path(env["SLOTDECK_HOME"]) / "local.json"
    local.unlink(missing_ok=True)  # wait for this server's own file, not one a previous run left
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedded_service.cli", "serve", "--port", "0", "--no-probes", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not local.exists():
        assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    return proc, json.loads(local.read_text())["url"]


def test_serve_local_token_cli_commands_and_sigterm(home: dict[str, str]) -> None:
    env = {**home, "MAX_CONCURRENT_REQUESTS": "3"}
    proc, url = _serve(env, "--grace-s", "1")
    try:
        assert oct(os.stat(Path(home["SLOTDECK_HOME"]) / "local.json").st_mode & 0o777) == "0o600"
        status = slotdeck("status", env=env)
        assert status.returncode == 0 and "default" in status.stdout and "0/3" in status.stdout
        assert slotdeck("limit", "default", "5", env=env).stdout.strip() == "default: limit 5, admitting"
        paused = json.loads(slotdeck("pause", "default", "--json", env=env).stdout)
        assert paused["paused"] is True
        assert slotdeck("resume", "default", env=env).returncode == 0
        snap = json.loads(slotdeck("status", "--json", env=env).stdout)
        assert snap["queues"][0]["config"]["limit"] == 5
        job_id = slotdeck("submit", "--", sys.executable, "-c", "print('hi')", env=env).stdout.strip()
        deadline = time.monotonic() + 15
        while "succeeded" not in slotdeck("jobs", env=env).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert slotdeck("log", job_id, env=env).stdout == "hi\n"
        assert slotdeck("cancel", "no-such-job", env=env).returncode == 5
        assert slotdeck("status", "--token", "sdk_wrong", env=env).returncode == 4
        assert slotdeck("status", "--url", "http://127.0.0.1:9", env=env).returncode == 3
        with httpx.Client(base_url=url) as anonymous:
            assert anonymous.get("/v1/snapshot").status_code == 401
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "stopping: no new admissions" in out and "stopped; store closed" in out
        assert "sdk_" not in out  # tokens never reach the log
    finally:
        proc.kill()
        proc.wait()
    # the limit set over the API survived the restart; MAX_CONCURRENT_REQUESTS only applies when given
    proc, _ = _serve(home)
    try:
        assert json.loads(slotdeck("status", "--json", env=home).stdout)["queues"][0]["config"]["limit"] == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_token_create_against_the_store_and_non_loopback_refusal(home: dict[str, str], tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'tokens.db'}"
    refused = slotdeck("serve", "--host", "0.0.0.0", "--port", "0", "--no-probes", "--store", store, env=home)
    assert refused.returncode == 2 and "no tokens configured" in refused.stderr
    refused = slotdeck("serve", "--host", "0.0.0.0", "--no-auth", "--store", store, env=home)
    assert refused.returncode == 2 and "without authentication" in refused.stderr
    made = slotdeck("token", "create", "--role", "operator", "--name", "ops", "--store", store, env=home)
    assert made.returncode == 0 and made.stdout.startswith("sdk_")
    listed = slotdeck("token", "list", "--json", "--store", store, env=home)
    assert json.loads(listed.stdout)[0] == {
        "name": "ops",
        "role": "operator",
        "created_at": pytest.approx(time.time(), abs=60),
    }
    assert made.stdout.strip() not in (tmp_path / "tokens.db").read_bytes().decode("latin-1")  # only its hash is stored
    assert slotdeck("token", "delete", "ops", "--store", store, env=home).returncode == 0
    assert slotdeck("token", "delete", "ops", "--store", store, env=home).returncode == 5
    assert slotdeck("serve", "--store", "ftp://x", env=home).returncode == 2


def test_gui_without_the_desktop_extra_says_how_to_install(home: dict[str, str]) -> None:
    no_qt = "import sys; sys.modules['PySide6'] = None; from embedded_service.cli import main; sys.exit(main(['gui']))"
    result = subprocess.run([sys.executable, "-c", no_qt], env=home, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "pip install 'slotdeck[desktop]'" in result.stderr


def test_settings_precedence_flags_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "slotdeck.toml"
    config.write_text('[server]\nport = 9000\ngrace_s = 5\nlog_level = "DEBUG"\ndefault_limit = 2\n')
    env = {"SLOTDECK_PORT": "9100", "MAX_CONCURRENT_JOBS": "7", "SLOTDECK_LOG_JSON": "yes"}
    settings = load_settings({"port": 9200, "host": None}, env=env, config_file=config)
    assert (settings.port, settings.grace_s, settings.log_level, settings.default_limit, settings.log_json) == (
        9200,
        5.0,
        "DEBUG",
        7,
        True,
    )
    monkeypatch.setenv("SLOTDECK_HOME", str(tmp_path))
    assert load_settings({}, env={}).resolved_store() == f"sqlite:///{tmp_path / 'slotdeck.db'}"
    with pytest.raises(ConfigError, match="port"):
        load_settings({}, env={"SLOTDECK_PORT": "many"})
    with pytest.raises(ConfigError, match="yes/no"):
        load_settings({}, env={"SLOTDECK_AUTH": "perhaps"})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, env={}, config_file=tmp_path / "missing.toml")


def test_local_endpoint_file_roundtrip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embedded_service.localmode import write_local_endpoint

    monkeypatch.setenv("SLOTDECK_HOME", str(tmp_path))
    assert read_local_endpoint() is None
    path = write_local_endpoint("http://127.0.0.1:1", "sdk_x")
    assert read_local_endpoint() == ("http://127.0.0.1:1", "sdk_x") and path.stat().st_mode & 0o777 == 0o600
    path.write_text("{broken")
    assert read_local_endpoint() is None
