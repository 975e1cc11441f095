"""Desktop test fixtures: a qasync loop on the test QApplication and a real server over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import qasync
from desktop_harness import Confirmations, QtLoop, start_server

from desktop.views import confirm
from embedded_service.api.embedded import EmbeddedServer


@pytest.fixture(scope="session")
def qasync_loop(qapp) -> Iterator[qasync.QEventLoop]:  # type: ignore[no-untyped-def]
    """One qasync loop for the whole session, as the app has one for its life (a new loop per test on the
    same QApplication crashed Qt when a later loop ran)."""
    qapp.setQuitOnLastWindowClosed(False)  # as desktop.app.build() does: the window's run() decides when to stop
    loop = qasync.QEventLoop(qapp, already_running=False)
    yield loop
    loop.close()


@pytest.fixture
def qloop(qasync_loop: qasync.QEventLoop) -> Iterator[QtLoop]:
    asyncio.set_event_loop(qasync_loop)
    try:
        yield QtLoop(qasync_loop)
    finally:
        pending = [t for t in asyncio.all_tasks(qasync_loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            qasync_loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        asyncio.set_event_loop(None)


@pytest.fixture
def server() -> Iterator[EmbeddedServer]:
    srv = start_server()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Confirmations:
    """The operator's answers to confirmation dialogs (yes unless told otherwise)."""
    stand_in = Confirmations()
    monkeypatch.setattr(confirm, "confirm", stand_in)
    return stand_in

