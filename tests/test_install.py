"""`make run`'s install steps beyond Debian: system packages only where apt exists and they are
missing, a one-line hint elsewhere; package metadata that setuptools does not warn about."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-deps.sh"


def _bin(tmp_path: Path, fakes: dict[str, str], real: tuple[str, ...] = ("uname", "grep", "id")) -> Path:
    """A PATH with only these real tools plus fake ones (shell snippets)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in real:
        if tool not in fakes:
            found = shutil.which(tool)
            assert found, tool
            (bindir / tool).symlink_to(found)
    for tool, body in fakes.items():
        path = bindir / tool
        path.write_text(f"#!{shutil.which('bash')}\n{body}\n")
        path.chmod(0o755)
    return bindir


def _run(bindir: Path, *packages: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(
        [bash, str(SCRIPT), *packages], env={"PATH": str(bindir)}, capture_output=True, text=True, timeout=60
    )


def test_without_apt_one_line_says_what_to_install_and_exit_0(tmp_path: Path) -> None:
    done = _run(_bin(tmp_path, {}))
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and "no apt-get here" in lines[0] and "xkbcommon" in lines[0]


def test_with_dnf_the_hint_is_a_dnf_command(tmp_path: Path) -> None:
    done = _run(_bin(tmp_path, {"dnf": "exit 0"}))
    assert done.returncode == 0 and "dnf install" in done.stdout and "xcb-util-cursor" in done.stdout


def test_debian_installs_only_the_missing_packages(tmp_path: Path) -> None:
    calls = tmp_path / "apt-calls"
    fakes = {
        "dpkg-query": 'case "$3" in libegl1|xvfb) exit 1;; *) echo "install ok installed";; esac',
        "apt-get": f'echo "$@" >> {calls}',
        "id": "echo 0",
    }
    done = _run(_bin(tmp_path, fakes))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "system-deps: installing xvfb libegl1"
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq --no-install-recommends xvfb libegl1"]


def test_debian_installs_packages_named_as_arguments_too(tmp_path: Path) -> None:
    """`make test` adds dpkg-dev (dpkg-shlibdeps, for the .deb) to what Qt needs."""
    calls = tmp_path / "apt-calls"
    fakes = {
        "dpkg-query": 'case "$3" in dpkg-dev) exit 1;; *) echo "install ok installed";; esac',
        "apt-get": f'echo "$@" >> {calls}',
        "id": "echo 0",
    }
    done = _run(_bin(tmp_path, fakes), "dpkg-dev")
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines()[-1] == "install -y -qq --no-install-recommends dpkg-dev"


def test_debian_with_everything_installed_is_silent(tmp_path: Path) -> None:
    calls = tmp_path / "apt-calls"
    fakes = {"dpkg-query": 'echo "install ok installed"', "apt-get": f'echo "$@" >> {calls}'}
    done = _run(_bin(tmp_path, fakes))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "") and not calls.exists()


def test_debian_without_root_or_sudo_names_the_command(tmp_path: Path) -> None:
    fakes = {"dpkg-query": "exit 1", "apt-get": "exit 99", "id": "echo 1000"}
    done = _run(_bin(tmp_path, fakes))
    assert done.returncode == 0
    assert "not root and no sudo" in done.stdout and "apt-get install --no-install-recommends xvfb" in done.stdout


def test_package_metadata_uses_the_spdx_license_string() -> None:
    """A TOML-table license makes setuptools >= 77 print a deprecation warning per build step."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in project["build-system"]["requires"]  # the first that reads the string form
