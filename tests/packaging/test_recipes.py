"""The Windows and macOS recipes cannot run here (no Windows, no macOS, no Inno Setup, no hdiutil): these
tests check only what can be checked on Linux, namely that the recipes agree with each other and with
the files they name. Whether they build is shown by .github/workflows/installers.yml on those runners."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import tomllib
from pathlib import Path, PureWindowsPath

import yaml

from embedded_service.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "packaging" / "slotdeck.spec"
ISS = ROOT / "packaging" / "windows" / "slotdeck.iss"
BUILD_PS1 = ROOT / "packaging" / "windows" / "build.ps1"
MAKE_DMG = ROOT / "packaging" / "macos" / "make-dmg.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "installers.yml"


def spec_calls() -> dict[str, ast.Call]:
    """The spec's PyInstaller steps by name (Analysis, EXE, COLLECT, BUNDLE), parsed, not run."""
    tree = ast.parse(SPEC.read_text(), filename=str(SPEC))
    steps = {"Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE"}
    return {
        node.func.id: node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in steps
    }


def keyword(call: ast.Call, name: str) -> object:
    return next(ast.literal_eval(k.value) for k in call.keywords if k.arg == name)


def root_path(node: ast.expr) -> Path:
    """`ROOT / "a" / "b"` in the spec as a path in this checkout."""
    if isinstance(node, ast.Call):  # str(...)
        return root_path(node.args[0])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return root_path(node.left) / ast.literal_eval(node.right)
    assert isinstance(node, ast.Name) and node.id == "ROOT", ast.dump(node)
    return ROOT


def iss_sections() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in ISS.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(";") or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        else:
            sections.setdefault(current, []).append(line)
    return sections


def iss_params(entry: str) -> dict[str, str]:
    """`Source: "a"; DestDir: "{app}"` -> {"Source": "a", "DestDir": "{app}"}."""
    return {k.strip(): v.strip().strip('"') for k, v in (part.split(":", 1) for part in entry.split(";"))}


def test_spec_names_its_entry_script_and_the_folder_and_app_the_recipes_expect() -> None:
    calls = spec_calls()
    entry = root_path(calls["Analysis"].args[0].elts[0])  # type: ignore[attr-defined]
    assert entry == ROOT / "packaging" / "slotdeck_main.py" and entry.exists()
    assert keyword(calls["EXE"], "name") == keyword(calls["COLLECT"], "name") == "slotdeck"
    assert keyword(calls["BUNDLE"], "name") == "SlotDeck.app"
    assert 'app="$out/SlotDeck.app"' in MAKE_DMG.read_text()
    assert "/SlotDeck.app/Contents/MacOS/slotdeck --version" in WORKFLOW.read_text()


def test_inno_setup_script_packs_the_pyinstaller_folder_and_starts_the_dashboard() -> None:
    sections = iss_sections()
    setup = dict(line.split("=", 1) for line in sections["Setup"])
    assert setup["AppVersion"] == "{#AppVersion}" and "#error" in ISS.read_text()  # build.ps1 must pass it
    [files] = [iss_params(line) for line in sections["Files"]]
    source = PureWindowsPath(files["Source"])
    assert (ISS.parent / Path(*source.parent.parts)).resolve() == ROOT / "dist" / "slotdeck"  # where the spec builds
    assert files["DestDir"] == "{app}" and "recursesubdirs" in files["Flags"]
    [icon] = [iss_params(line) for line in sections["Icons"]]
    assert icon["Filename"] == "{app}\\slotdeck.exe"
    args = build_parser().parse_args(icon["Parameters"].split())
    assert args.command == "gui"
    assert re.fullmatch(r"slotdeck-\{#AppVersion\}-windows-setup", setup["OutputBaseFilename"])


def test_build_scripts_name_files_that_exist() -> None:
    ps1 = BUILD_PS1.read_text()
    for named in re.findall(r"\\(packaging\\[\w\\.]+)", ps1):
        assert (ROOT / PureWindowsPath(named).as_posix()).exists(), named
    assert "packaging\\slotdeck.spec" in ps1 and "packaging\\windows\\slotdeck.iss" in ps1
    dmg = MAKE_DMG.read_text()
    assert '"$root/packaging/slotdeck.spec"' in dmg and "hdiutil create" in dmg
    bash = shutil.which("bash")
    assert bash
    assert subprocess.run([bash, "-n", str(MAKE_DMG)], capture_output=True).returncode == 0


def test_workflow_builds_each_installer_on_its_runner_and_runs_the_result() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    assert jobs["windows"]["runs-on"] == "windows-latest" and jobs["macos"]["runs-on"] == "macos-latest"
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for name, script in (("windows", "packaging\\windows\\build.ps1"), ("macos", "bash packaging/macos/make-dmg.sh")):
        steps = "\n".join(step.get("run", "") for step in jobs[name]["steps"])
        assert script in steps
        assert "--version" in steps
        for wanted in re.findall(r'-e "\.\[([\w,]+)\]"', steps):
            assert set(wanted.split(",")) <= extras
