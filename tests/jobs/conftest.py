"""Services with quick job settings, over every store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from embedded_service import SlotService
from embedded_service.jobs import JobSettings

QUICK = JobSettings(poll_s=0.05, kill_grace_s=1.0, retry_backoff_s=0.05, retry_backoff_max_s=0.2, window=8)


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/jobs.db"


@pytest.fixture
async def svc(store_url: str) -> AsyncIterator[SlotService]:
    service = SlotService(store=store_url, jobs=QUICK)
    service.configure_queue("default", limit=2)
    async with service:
        yield service
