"""Local mode keeps its port across starts (`--port` sets it), and bare `slotdeck` without a display says what
to run instead and exits 2 (before: Qt aborted with 134 and a misleading "install libxcb-cursor0")."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from PySide6.QtCore import QSettings

from desktop.app import parse_args
from desktop.display import NO_DISPLAY_EXIT, no_display_reason
from desktop.local import LocalService
from desktop.local_port import choose_local_port
from desktop.settings import AppSettings


def settings_in(tmp_path: Path) -> AppSettings:
    return AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


def test_the_port_is_chosen_once_and_kept(tmp_path: Path) -> None:
    first, note = choose_local_port(settings_in(tmp_path))
    assert note is None and 0 < first < 65536
    again, note = choose_local_port(settings_in(tmp_path))  # a new run reads the same settings file
    assert (again, note) == (first, None)
    chosen, _ = choose_local_port(settings_in(tmp_path), requested=first + 1 if first < 65535 else first - 1)
    assert choose_local_port(settings_in(tmp_path))[0] == chosen, "--port is remembered"


def test_a_stored_port_held_by_another_program_is_not_stolen(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    try:
        settings = settings_in(tmp_path)
        settings.set_local_port(busy)
        port, note = choose_local_port(settings)
        assert port != busy and note is not None and str(busy) in note and "--port" in note
        assert settings.local_port() == busy, "the choice is kept for the next run"
    finally:
        holder.close()


def test_the_local_service_listens_on_the_kept_port_across_starts(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SLOTDECK_HOME", str(tmp_path / "home"))
    port, _ = choose_local_port(settings_in(tmp_path))
    for _ in range(2):
        local = LocalService(f"sqlite:///{tmp_path / 'slots.db'}", port=port, probes=False, grace_s=0.2)
        local.server.start()
        try:
            assert local.server.url == f"http://127.0.0.1:{port}"
            assert httpx.get(f"{local.server.url}/v1/health", timeout=10).status_code == 200
        finally:
            local.server.stop()
        port_again, _ = choose_local_port(settings_in(tmp_path))
        assert port_again == port


def test_port_option_is_checked() -> None:
    assert parse_args(["--port", "8765"]).port == 8765
    try:
        parse_args(["--port", "70000"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("--port 70000 accepted")


def test_no_display_reason_names_what_to_run() -> None:
    assert no_display_reason({}, "linux") is not None and "slotdeck serve" in (no_display_reason({}, "linux") or "")
    assert no_display_reason({"DISPLAY": ":0"}, "linux") is None
    assert no_display_reason({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert no_display_reason({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert no_display_reason({}, "darwin") is None and no_display_reason({}, "win32") is None


def test_bare_slotdeck_without_a_display_exits_2_with_a_hint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["SLOTDECK_HOME"] = str(tmp_path / "home")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from embedded_service.cli import main; sys.exit(main([]))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == NO_DISPLAY_EXIT, result.stderr[-2000:]
    assert "no display" in result.stderr and "slotdeck serve" in result.stderr
    assert "Traceback" not in result.stderr and "xcb" not in result.stderr
