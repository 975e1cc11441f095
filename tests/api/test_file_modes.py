"""Files private by default: the data dir 0700; the database, its journals, job logs and local.json 0600,
even under a umask of 0000."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import httpx

from embedded_service.jobs.logs import CappedLog
from embedded_service.localmode import write_local_endpoint
from tests.api.test_cli_and_server import _serve, home  # noqa: F401  (home is a fixture)


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def test_a_server_under_umask_0000_keeps_its_files_private(home: dict[str, str]) -> None:  # noqa: F811
    data = Path(home["SLOTDECK_HOME"])
    old = os.umask(0)
    try:
        proc, url = _serve(home)  # the server inherits the umask
    finally:
        os.umask(old)
    try:
        token = json.loads((data / "local.json").read_text())["token"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            job = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", "print('x')"], "env": {"K": "v"}}).json()
            deadline = time.monotonic() + 30
            while http.get(f"/v1/jobs/{job['id']}").json()["state"] != "succeeded":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        files = {
            "data dir": data,
            "database": data / "slotdeck.db",
            "WAL": data / "slotdeck.db-wal",
            "shared memory": data / "slotdeck.db-shm",
            "local.json": data / "local.json",
            "log dir": data / "slotdeck.db-logs",
            "job log": data / "slotdeck.db-logs" / f"{job['id']}.log",
        }
        modes = {name: _mode(path) for name, path in files.items()}
        assert modes == {name: "0o700" if path.is_dir() else "0o600" for name, path in files.items()}, modes
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_existing_files_are_narrowed_and_rotated_logs_stay_private(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(0)
    try:
        home_dir = tmp_path / "home"
        home_dir.mkdir(mode=0o777)
        monkeypatch.setenv("SLOTDECK_HOME", str(home_dir))
        write_local_endpoint("http://127.0.0.1:1", "sdk_x")
        assert _mode(home_dir) == "0o700" and _mode(home_dir / "local.json") == "0o600"
        log_path = tmp_path / "logs" / "j1.log"
        log_path.parent.mkdir(mode=0o777)
        log_path.write_bytes(b"old\n")
        log_path.chmod(0o644)
        sink = CappedLog(log_path, 1024)
        sink.write(b"y" * 600 + b"\n")
        sink.write(b"z" * 600 + b"\n")  # rotates: the new file is created afresh
        sink.close()
        assert _mode(log_path) == "0o600"
        assert _mode(log_path.with_name("j1.log.1")) == "0o600"
        assert _mode(log_path.parent) == "0o777", "a directory the user made is theirs to set"
    finally:
        os.umask(old)
