"""The docs in the repository stay true: generated pages in sync, every setting documented,
every relative link and anchor resolving, monitoring files naming metrics that exist."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import unicodedata
from pathlib import Path

import httpx
import pytest
import yaml

from embedded_service.api.embedded import EmbeddedServer
from embedded_service.cli import build_parser
from embedded_service.cli_completion import walk
from embedded_service.config import Settings
from embedded_service.model import DeviceSpec

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIG_MD = DOCS / "configuration.md"


def _gen_docs():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_api_and_cli_pages_are_up_to_date() -> None:
    stale = [
        str(path.relative_to(ROOT))
        for path, text in _gen_docs().pages().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert stale == [], f"run: .venv/bin/python scripts/gen_docs.py  (out of date: {stale})"


def test_api_page_covers_every_route_and_model() -> None:
    schema = _gen_docs().openapi_schema()
    page = (DOCS / "api.md").read_text(encoding="utf-8")
    for path, item in schema["paths"].items():
        for method in item:
            assert f"`{method.upper()} {path}`" in page
    for name in schema["components"]["schemas"]:
        assert f"### {name}\n" in page


def test_configuration_reference_names_every_flag_variable_and_key() -> None:
    text = CONFIG_MD.read_text(encoding="utf-8")
    missing = []
    for name in Settings.model_fields:
        missing += [w for w in (f"`SLOTDECK_{name.upper()}", f"`{name}`") if w not in text]
    paths = walk(build_parser())
    for command in ("slotdeck serve", "slotdeck pause"):  # the server's flags; the client flags every command shares
        for action in paths[command]._actions:
            missing += [f"{command}: {flag}" for flag in action.option_strings if flag.startswith("--") and flag != "--help"
                        and f"`{flag}" not in text]  # fmt: skip
    desktop_flags = re.findall(r'add_argument\(\s*"(--[a-z-]+)"', (ROOT / "desktop" / "app.py").read_text())
    assert desktop_flags
    missing += [f"gui {flag}" for flag in desktop_flags if f"`{flag}" not in text]
    sources = [*(ROOT / "embedded_service").rglob("*.py"), *(ROOT / "desktop").rglob("*.py")]
    variables = {v for p in sources for v in re.findall(r"\b(SLOTDECK_[A-Z][A-Z_]*|MAX_CONCURRENT_[A-Z]+)\b", p.read_text())}
    assert "SLOTDECK_HOME" in variables
    missing += [v for v in sorted(variables) if f"`{v}" not in text]
    assert missing == [], "undocumented in docs/configuration.md"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_\[\]()]", "", heading.strip().lower())
    text = "".join(ch for ch in text if ch in " -" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_readme_and_docs_link_only_to_what_exists() -> None:
    pages = [ROOT / "README.md", *DOCS.rglob("*.md"), *ROOT.glob("examples/*/README.md"), *ROOT.glob("packaging/**/*.md")]
    broken = []
    for page in pages:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an absolute URL
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)} -> {target} (no such heading)")
    assert broken == []
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "DESIGN.md" not in readme
    assert ".venv/bin/slotdeck" in readme and "source .venv/bin/activate" in readme
    assert "/docs" in readme and "/metrics" in readme and "viewer" in readme


def test_every_example_has_a_readme_naming_a_test_that_exists() -> None:
    """Each examples/NAME has a README with its one command, and the test it says checks its promises exists."""
    missing = []
    for folder in sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        readme = folder / "README.md"
        named = re.findall(r"`(tests/examples/test_\w+\.py)`", readme.read_text(encoding="utf-8")) if readme.exists() else []
        if not named or not all((ROOT / test).exists() for test in named):
            missing.append(f"{folder.name}: README {'names ' + ', '.join(named) if named else 'missing or names no test'}")
    assert missing == []


def _metric_names(exposition: str) -> set[str]:
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, flags=re.M):
        names.add(name)
        names.update(
            {"counter": [f"{name}_total"], "histogram": [f"{name}_{s}" for s in ("bucket", "sum", "count")]}.get(kind, [])
        )
    return names


def test_grafana_dashboard_and_alert_rules_use_metrics_the_server_exposes() -> None:
    devices = [DeviceSpec(index=0, name="cfg", memory_total_mib=8_000)]
    with EmbeddedServer("memory://", probes=False, write_local=False, grace_s=0, devices=devices) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        exposed = _metric_names(httpx.get(f"{server.url}/metrics", headers=headers, timeout=10).text)
        assert "swagger" in httpx.get(f"{server.url}/docs", timeout=10).text.lower()  # the README's `/docs`
    exposed |= {"slotdeck_host_cpu_percent", "slotdeck_host_memory_used_mib"}  # only with the host probe on
    dashboard = json.loads((DOCS / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DOCS / "deploy" / "slotdeck-alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\bslotdeck_[a-z_]+", e)}
    assert len(used) >= 10 and used - exposed == set()
    scrape = yaml.safe_load((DOCS / "deploy" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["authorization"]["type"] == "Bearer"


def test_systemd_unit_runs_serve_with_flags_that_exist() -> None:
    unit = (DOCS / "deploy" / "slotdeck.service").read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", unit, flags=re.M)
    assert exec_start is not None
    words = exec_start.group(1).split()
    assert words[0].endswith("/slotdeck") and words[1] == "serve"
    build_parser().parse_args(words[1:])  # exits (fails the test) on an unknown flag
    timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, flags=re.M).group(1))  # type: ignore[union-attr]
    assert timeout > Settings.model_fields["grace_s"].default  # systemd must not kill the drain


@pytest.mark.skipif(sys.platform != "linux", reason="the page is generated on Linux")
def test_gen_docs_check_mode_reports_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = _gen_docs()
    page = tmp_path / "api.md"
    page.write_text("old\n")
    monkeypatch.setattr(gen, "pages", lambda: {page: "new\n"})
    assert gen.main(["--check"]) == 1 and page.read_text() == "old\n"
    assert gen.main([]) == 0 and page.read_text() == "new\n"
    assert gen.main(["--check"]) == 0
