"""Running an installed SlotDeck as its user would: a clean environment and its local service's file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.xdisplay import grab_screen, xvfb_display


def user_env(home: Path) -> dict[str, str]:
    """A user's environment without this checkout's venv: the bundle must carry everything itself."""
    path = ":".join(p for p in os.environ["PATH"].split(":") if ".venv" not in p)
    return {
        "PATH": path,
        "HOME": str(home),
        "SLOTDECK_HOME": str(home / "slotdeck"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }


def wait_for_local_file(home: Path, proc: subprocess.Popen[str]) -> dict[str, str]:
    """The local service's `{url, token}` once it wrote them (60 s at most; fails if `proc` ended)."""
    local = home / "slotdeck" / "local.json"
    deadline = time.monotonic() + 60
    while not local.exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no local.json: the service did not start"
        time.sleep(0.1)
    return json.loads(local.read_text())


def assert_dashboard_opens(argv: list[str], home: Path) -> None:
    """Run `argv` (an installed dashboard) as a user with home `home` on a fresh Xvfb screen: its local service
    answers, it is still up after drawing for a few seconds, the screen shows a window, and SIGTERM stops it."""
    with xvfb_display() as display:
        env = {**user_env(home), "DISPLAY": display}
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            endpoint = wait_for_local_file(home, proc)
            assert httpx.get(f"{endpoint['url']}/v1/health").json()["status"] == "ok"
            time.sleep(4)  # the window connects and draws its first seconds of data
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert grab_screen(display, home / "screen.png") > 10, "the X screen shows a drawn window"
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()


def assert_server_stops_cleanly(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to a running `slotdeck serve`: it drains, closes its store and exits 0 within 60 s."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped; store closed" in out, out[-3000:]
