"""The README's library example is code a newcomer pastes first: it must run as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_library_example_runs_and_admits_everyone() -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert blocks, "the README has no python example"
    example = blocks[0]
    assert "SlotService" in example
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60, cwd=README.parent)
    assert result.returncode == 0, result.stderr
    # ten callers through a queue of three: all granted, all released, nobody timed out or turned away
    assert "granted=10 released=10 timed_out=0 rejected=0" in result.stdout
