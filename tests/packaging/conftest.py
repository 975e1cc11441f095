"""The Linux bundle, built once per test session and shared by the tarball and .deb tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def bundle_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding what `make dist` makes: `slotdeck/` (the bundle) and its tarball.

    packaging/build.sh runs once per session (about 1-2 minutes); SLOTDECK_TEST_DIST=DIR uses a folder
    built before instead (e.g. `make dist` then SLOTDECK_TEST_DIST=dist), at the risk of testing a stale build."""
    pytest.importorskip("PyInstaller", reason="the packaging extra is not installed (make test installs it)")
    if os.environ.get("SLOTDECK_TEST_DIST"):
        return Path(os.environ["SLOTDECK_TEST_DIST"]).resolve()
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        ["bash", str(ROOT / "packaging" / "build.sh"), str(out)],
        env={**os.environ, "PYTHON": sys.executable},  # this interpreter has PyInstaller (checked above)
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    return out
