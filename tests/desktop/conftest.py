"""Desktop test fixtures: a qasync loop on the test QApplication and a real server over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import qasync
from desktop_harness import QtLoop, start_server

from embedded_service.api.embedded import EmbeddedServer


@pytest.fixture
def qloop(qapp) -> Iterator[QtLoop]:  # type: ignore[no-untyped-def]
    qapp.setQuitOnLastWindowClosed(False)  # as desktop.app.build() does: the window's run() decides when to stop
    loop = qasync.QEventLoop(qapp, already_running=False)
    asyncio.set_event_loop(loop)
    try:
        yield QtLoop(loop)
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def server() -> Iterator[EmbeddedServer]:
    srv = start_server()
    try:
        yield srv
    finally:
        srv.stop()
