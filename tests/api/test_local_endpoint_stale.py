"""A `local.json` names no URL once its service is gone: a stopped server takes its URL out (the token stays
for the next start), and one a killed server left is not trusted
(whoever listens on its port now is not sent the admin token). Real servers, real processes, loopback HTTP."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.api.test_cli_and_server import _serve, home, slotdeck  # noqa: F401  (home is a fixture)


class _Listener(http.server.BaseHTTPRequestHandler):
    """Whoever holds the port now: answers everything 200 and remembers the Authorization headers."""

    seen: ClassVar[list[str | None]] = []

    def _answer(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        body = b'{"status": "ok"}' if self.path.startswith("/v1/health") else b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stranger() -> Iterator[tuple[str, list[str | None]]]:
    _Listener.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Listener)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Listener.seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_stopped_server_takes_its_url_out_of_local_json_and_keeps_the_token(home: dict[str, str]) -> None:  # noqa: F811
    local = Path(home["SLOTDECK_HOME"]) / "local.json"
    proc, _url = _serve(home, "--grace-s", "1")
    assert local.exists()
    proc.terminate()
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    left = json.loads(local.read_text())
    assert left["url"] is None, "the admin token would be sent to whoever takes the port next"
    assert slotdeck("status", env=home).returncode != 0  # no server named: nothing is sent anywhere
    again = subprocess.Popen(  # not _serve: it removes local.json first
        [sys.executable, "-m", "embedded_service.cli", "serve", "--port", "0", "--no-probes", "--grace-s", "1"],
        env=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while json.loads(local.read_text())["url"] is None:
            assert again.poll() is None and time.monotonic() < deadline, "the second server did not start"
            time.sleep(0.05)
        assert json.loads(local.read_text())["token"] == left["token"], "scripts that read local.json keep working"
    finally:
        again.terminate()
        again.wait(timeout=60)


def test_a_killed_servers_local_json_is_not_sent_to_whoever_has_its_port(
    home: dict[str, str],  # noqa: F811
    stranger: tuple[str, list[str | None]],
) -> None:
    url, seen = stranger
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)  # a process that ran and was reaped: its pid names no service now
    data = Path(home["SLOTDECK_HOME"])
    data.mkdir(mode=0o700)
    (data / "local.json").write_text(json.dumps({"url": url, "token": "sdk_the_admin_token", "pid": gone.pid}))

    listed = slotdeck("token", "list", env=home)
    status = slotdeck("status", env=home)
    assert "sdk_the_admin_token" not in seen, seen
    assert listed.returncode == 0, listed.stderr  # the bare store: no server runs here
    assert status.returncode != 0 and "no server" in status.stderr and "Traceback" not in status.stderr

    # a live pid (this test's) is trusted as before
    (data / "local.json").write_text(json.dumps({"url": url, "token": "sdk_live", "pid": os.getpid()}))
    slotdeck("token", "list", env=home)
    assert "Bearer sdk_live" in seen


def test_a_server_that_is_not_slotdeck_gets_a_one_line_error(
    home: dict[str, str],  # noqa: F811
    stranger: tuple[str, list[str | None]],
) -> None:
    url, _seen = stranger
    status = slotdeck("status", "--url", url, "--token", "sdk_x", env=home)
    assert status.returncode != 0 and "Traceback" not in status.stderr, status.stderr
    assert status.stderr.count("\n") == 1 and "did not answer as SlotDeck does" in status.stderr, status.stderr


def test_local_json_is_not_written_through_a_planted_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embedded_service.localmode import read_local_endpoint, write_local_endpoint

    home_dir, stolen = tmp_path / "home", tmp_path / "stolen"
    home_dir.mkdir(mode=0o700)
    (home_dir / f".local.json.{os.getpid()}.tmp").symlink_to(stolen)  # left there while the directory was open
    monkeypatch.setenv("SLOTDECK_HOME", str(home_dir))
    path = write_local_endpoint("http://127.0.0.1:1", "sdk_admin")
    assert not stolen.exists(), "the admin token went where the symlink pointed"
    assert not path.is_symlink() and read_local_endpoint() == ("http://127.0.0.1:1", "sdk_admin")
