"""The Linux bundle as a user gets it: built by packaging/build.sh, unpacked from its tarball, installed
with its install.sh, then run: the server answers and stops cleanly, and the dashboard opens on a real
X screen with its own local service."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from embedded_service import __version__
from tests.packaging.apprun import assert_dashboard_opens, assert_server_stops_cleanly, user_env, wait_for_local_file

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def installed(bundle_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's tarball unpacked elsewhere and installed under a temporary prefix; yields the prefix."""
    [tarball] = bundle_dist.glob(f"slotdeck-{__version__}-linux-*.tar.gz")
    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(tarball) as archive:
        archive.extractall(unpacked, filter="tar")
    prefix = tmp_path_factory.mktemp("prefix")
    done = subprocess.run(
        [str(unpacked / "slotdeck" / "install.sh")],
        env={**os.environ, "PREFIX": str(prefix)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert f"installed SlotDeck {__version__}" in done.stdout
    shutil.rmtree(unpacked)  # what runs from here on is the installed copy only
    yield prefix


def test_installer_puts_the_command_and_a_menu_entry(installed: Path) -> None:
    command = installed / "bin" / "slotdeck"
    assert subprocess.run([str(command), "--version"], capture_output=True, text=True).stdout.strip() == (
        f"slotdeck {__version__}"
    )
    entry = (installed / "share" / "applications" / "slotdeck.desktop").read_text()
    assert f"Exec={installed}/opt/slotdeck/slotdeck gui" in entry and "Icon=slotdeck" in entry
    assert (installed / "share" / "icons" / "hicolor" / "scalable" / "apps" / "slotdeck.svg").read_text().startswith("<")


def test_bundled_server_runs_a_job_and_stops_cleanly(installed: Path, tmp_path: Path) -> None:
    command = str(installed / "bin" / "slotdeck")
    env = user_env(tmp_path)
    proc = subprocess.Popen(
        [command, "serve", "--port", "0", "--no-probes"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        endpoint = wait_for_local_file(tmp_path, proc)
        with httpx.Client(base_url=endpoint["url"], headers={"Authorization": f"Bearer {endpoint['token']}"}) as http:
            assert http.get("/v1/health").json()["status"] == "ok"
            job = http.post("/v1/jobs", json={"argv": ["sh", "-c", "echo from-the-bundle"]}).json()
            deadline = time.monotonic() + 30
            while http.get(f"/v1/jobs/{job['id']}").json()["state"] != "succeeded":
                assert time.monotonic() < deadline, "the job did not finish"
                time.sleep(0.1)
        listed = subprocess.run([command, "jobs"], env=env, capture_output=True, text=True)
        assert listed.returncode == 0 and "succeeded" in listed.stdout
        assert_server_stops_cleanly(proc)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.xvfb
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")
def test_bundled_dashboard_opens_with_its_local_service(installed: Path, tmp_path: Path) -> None:
    assert_dashboard_opens([str(installed / "bin" / "slotdeck")], tmp_path)
