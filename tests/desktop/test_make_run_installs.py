"""`make run` installs what the dashboard needs and nothing of the test tools (keyrings.alt's plaintext
backend among them, which would otherwise be where a user's tokens land)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _installs(target: str, venv: Path) -> list[str]:
    out = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return re.findall(r"pip install -q -e '\.\[([^\]]*)\]'", out)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_installs_only_the_dashboard_and_make_test_the_rest(tmp_path: Path) -> None:
    venv = tmp_path / "venv"  # not there: make lists every install step it would run
    assert _installs("run", venv) == ["desktop"]
    assert "desktop,redis,test" in _installs("test", venv)
