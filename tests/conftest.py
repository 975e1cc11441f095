"""Suite-wide: tests do not inherit the host's CUDA device selection.

A service honours its own `CUDA_VISIBLE_DEVICES` (and jobs must not inherit
`CUDA_DEVICE_ORDER`), so on a GPU host that sets them, tests with declared
devices would see fewer GPUs than they declare. Tests that are about these
variables set them themselves.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_inherited_cuda_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
