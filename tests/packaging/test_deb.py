"""The .deb as an administrator gets it: built by packaging/deb/build-deb.sh from the session's bundle,
installed with dpkg into a throwaway root (its own dpkg database; maintainer scripts run outside a chroot
with DPKG_ROOT pointing at it, so they never touch this machine's systemd or /var), then run from the
installed files: the command, the server as slotdeck.service starts it, and the dashboard as its menu entry
starts it under Xvfb. Purging it leaves nothing behind but dpkg's own database.

The tests run in file order: the last one purges the package."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from embedded_service import __version__
from tests.packaging.apprun import assert_dashboard_opens, assert_server_stops_cleanly

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("dpkg", "dpkg-deb", "dpkg-shlibdeps")),
        reason="needs dpkg and dpkg-dev (Debian or Ubuntu)",
    ),
]


def dpkg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """dpkg acting on `root` only: its database, its files, maintainer scripts told DPKG_ROOT=root."""
    env = {**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"}  # dpkg wants ldconfig on PATH
    return subprocess.run(
        ["dpkg", f"--root={root}", f"--log={root.parent / 'dpkg.log'}", "--force-not-root", "--force-script-chrootless",
         *args],
        env=env,
        capture_output=True,
        text=True,
    )  # fmt: skip


def in_root(root: Path, path: str) -> Path:
    """`path` as the installed system sees it, its symbolic links followed inside `root` (never into this machine)."""
    here = root / path.lstrip("/")
    for _ in range(10):
        if not here.is_symlink():
            return here
        target = os.readlink(here)
        here = root / target.lstrip("/") if target.startswith("/") else here.parent / target
    raise AssertionError(f"{path}: too many symbolic links")


def unit_setting(unit: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.+)$", unit, flags=re.M)


@pytest.fixture(scope="module")
def deb(bundle_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    built = subprocess.run(
        ["bash", str(ROOT / "packaging" / "deb" / "build-deb.sh"), str(bundle_dist / "slotdeck"), str(out)],
        env={**os.environ, "DEB_COMPRESSION": "none"},  # xz takes minutes on 270 MB; the content is the same
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    [package] = out.glob(f"slotdeck_{__version__}-1_*.deb")
    return package


@pytest.fixture(scope="module")
def root(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway root with an empty dpkg database and the package installed in it."""
    root = tmp_path_factory.mktemp("system") / "root"
    for folder in ("info", "updates", "triggers"):
        (root / "var" / "lib" / "dpkg" / folder).mkdir(parents=True)
    (root / "var" / "lib" / "dpkg" / "status").touch()
    # the libraries it depends on are this machine's, not the empty root's
    done = dpkg(root, "--force-depends", "--install", str(deb))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    yield root


def test_package_installs_the_command_menu_entry_man_page_and_a_disabled_unit(root: Path) -> None:
    query = ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Status}|${Version}|${Depends}|${Conffiles}"]
    status, version, depends, conffiles = subprocess.run(
        [*query, "slotdeck"], capture_output=True, text=True, check=True
    ).stdout.split("|")
    assert status == "install ok installed" and version == f"{__version__}-1"
    needs = {re.split(r"[ (]", d.strip())[0] for d in depends.split(",")}
    assert {"libc6", "libxcb-cursor0", "libegl1"} <= needs  # found by dpkg-shlibdeps
    assert conffiles.split()[0] == "/etc/slotdeck/slotdeck.toml"

    assert os.readlink(root / "usr" / "bin" / "slotdeck") == "/opt/slotdeck/slotdeck"
    command = in_root(root, "/usr/bin/slotdeck")
    assert subprocess.run([command, "--version"], capture_output=True, text=True).stdout.strip() == (
        f"slotdeck {__version__}"
    )
    entry = (root / "usr" / "share" / "applications" / "slotdeck.desktop").read_text()
    assert "Exec=slotdeck gui" in entry and "Icon=slotdeck" in entry
    assert (root / "usr" / "share" / "icons" / "hicolor" / "scalable" / "apps" / "slotdeck.svg").read_text().startswith("<")
    assert (root / "usr" / "share" / "man" / "man1" / "slotdeck.1.gz").stat().st_size > 0

    unit = (root / "lib" / "systemd" / "system" / "slotdeck.service").read_text()
    assert shlex.split(unit_setting(unit, "ExecStart")[0])[:2] == ["/usr/bin/slotdeck", "serve"]
    assert not (root / "etc" / "systemd").exists(), "installing enabled the unit"


def test_server_runs_from_the_installed_files_as_the_unit_starts_it(root: Path) -> None:
    """The unit's ExecStart and Environment (its data directory and config file inside the root), on a free port;
    the first admin token made as docs/operations.md says: `slotdeck token create` before the first start."""
    unit = (root / "lib" / "systemd" / "system" / "slotdeck.service").read_text()
    settings = dict(line.split("=", 1) for line in unit_setting(unit, "Environment"))
    env = {
        "PATH": os.environ["PATH"],
        "SLOTDECK_HOME": str(root / settings["SLOTDECK_HOME"].lstrip("/")),
        "SLOTDECK_CONFIG": str(in_root(root, settings["SLOTDECK_CONFIG"])),
    }
    executable, *args = shlex.split(unit_setting(unit, "ExecStart")[0])
    command = str(in_root(root, executable))
    made = subprocess.run(
        [command, "token", "create", "--role", "admin", "--name", "root"], env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [command, *args, "--port", str(port), "--no-probes"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the installed server did not answer"
            try:
                health = httpx.get(f"{url}/v1/health")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health.json()["status"] == "ok"
        assert httpx.get(f"{url}/v1/queues").status_code == 401  # no local token: the unit's --no-local-token
        queues = httpx.get(f"{url}/v1/queues", headers={"Authorization": f"Bearer {token}"})
        assert queues.status_code == 200, queues.text
        assert not (Path(env["SLOTDECK_HOME"]) / "local.json").exists()
        assert_server_stops_cleanly(proc)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.xvfb
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")
def test_menu_entry_opens_the_installed_dashboard(root: Path, tmp_path: Path) -> None:
    entry = (root / "usr" / "share" / "applications" / "slotdeck.desktop").read_text()
    program, *args = shlex.split(re.search(r"^Exec=(.+)$", entry, flags=re.M).group(1))  # type: ignore[union-attr]
    assert_dashboard_opens([str(in_root(root, f"/usr/bin/{program}")), *args], tmp_path)


def test_purge_leaves_nothing_but_dpkgs_database(root: Path) -> None:
    (root / "var" / "lib" / "slotdeck").mkdir(parents=True, exist_ok=True)  # the service's data (the server test made it)
    done = dpkg(root, "--purge", "slotdeck")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    left = {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_relative_to(root / "var" / "lib" / "dpkg")}
    assert left == {"var", "var/lib"}
