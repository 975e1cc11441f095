"""The API is a thin edge over SlotService: each route module imports on its own, and (a guard beside the
behaviour tests) no api/ module reaches into the engine, nor does jobs/ call its listeners."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import embedded_service

PACKAGE = Path(embedded_service.__file__).parent
ROUTE_MODULES = sorted(p.stem for p in (PACKAGE / "api").glob("routes_*.py"))


def attributes(folder: str, name: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    """Every `x.<name>` in the package's `folder`, as file:line, but those used as `x.<name>.<allowed>`."""
    hits = []
    for path in sorted((PACKAGE / folder).glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        fine = {
            id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in allowed
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == name and id(node) not in fine:
                hits.append(f"{path.name}:{node.lineno}")
    return hits


@pytest.mark.parametrize("module", ROUTE_MODULES)
def test_each_route_module_imports_alone(module: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", f"import embedded_service.api.{module}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PACKAGE.parent,
    )
    assert run.returncode == 0, run.stderr


def test_api_modules_call_the_service_not_its_engine() -> None:
    assert len(ROUTE_MODULES) >= 6
    assert attributes("api", "engine") == []


def test_jobs_publish_through_the_service_not_the_engines_listeners() -> None:
    """The runner may listen to the engine (an operator's revoke stops a job), never call its listeners."""
    assert attributes("jobs", "listeners", allowed=frozenset({"append", "remove"})) == []
