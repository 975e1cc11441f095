"""Every Python example in docs/python.md runs as printed and prints what the page says it does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from embedded_service.api.auth import create_token
from embedded_service.api.embedded import EmbeddedServer
from embedded_service.model import Role

PAGE = Path(__file__).resolve().parent.parent / "docs" / "python.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(encoding="utf-8"), flags=re.S | re.M)

# what each example must print, in page order
EXPECTED = [
    ["['ok', 'ok', 'ok', 'ok', 'ok']", "\n4\n"],
    ["peak 3"],
    ["(0,) (1,)", "[30000, 30000]"],
    ["succeeded cat.png at 640px succeeded 0 rendered"],
    ["holding L", "submitted j"],
    ["holding L", "['default']"],
    ["'/slots/v1/queues'", "'/slots/v1/queues/{queue}'"],
]


def test_the_page_has_the_examples_this_test_knows() -> None:
    assert len(BLOCKS) == len(EXPECTED)


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:  # type: ignore[misc]
    with EmbeddedServer("memory://", probes=False, write_local=False, grace_s=0) as server:
        token = server.call(create_token(server.service.store, "docs-example", Role.operator))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTDECK_")}
        yield {**env, "SLOTDECK_URL": server.url, "SLOTDECK_TOKEN": token}


@pytest.mark.parametrize("index", range(len(EXPECTED)))
def test_example_runs_and_prints_what_the_page_promises(index: int, server_env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]], env=server_env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for text in EXPECTED[index]:
        assert text in done.stdout, (text, done.stdout)
