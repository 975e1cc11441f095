"""Suite-wide: tests do not inherit the host's CUDA device selection.

A service honours its own `CUDA_VISIBLE_DEVICES` (and jobs must not inherit
`CUDA_DEVICE_ORDER`), so on a GPU host that sets them, tests with declared
devices would see fewer GPUs than they declare. Tests that are about these
variables set them themselves. `private_redis`: a redis-server of the test's own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_inherited_cuda_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Any]:
    """A private redis-server on a free loopback port (tests/cluster/redisproc.py), stopped after the test."""
    helpers = str(Path(__file__).parent / "cluster")
    if helpers not in sys.path:
        sys.path.insert(0, helpers)
    from redisproc import PrivateRedis

    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
