"""Running an installed SlotDeck as its user would: a clean environment and its local service's file."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path


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
