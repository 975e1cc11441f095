"""Desktop test fixtures: a qasync loop on the test QApplication, a real server over loopback, and the real
main window in local mode (its own embedded service, SQLite in a temp dir, no keyring, temp settings)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import qasync
from desktop_harness import Confirmations, QtLoop, run_on, start_server
from keyring.backends import fail
from PySide6.QtCore import QSettings

from desktop.credentials import TokenVault
from desktop.local import LOCAL_NAME, LocalService
from desktop.settings import AppSettings
from desktop.views import confirm
from desktop.window import MainWindow
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
            run_on(qasync_loop, asyncio.gather(*pending, return_exceptions=True))
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


@pytest.fixture
def window(  # type: ignore[no-untyped-def]
    qloop: QtLoop, qapp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: Confirmations
) -> Iterator[MainWindow]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SLOTDECK_HOME", str(tmp_path / "home"))
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    local = LocalService(f"sqlite:///{tmp_path / 'slots.db'}", probes=False, grace_s=0.5, sample_interval_s=0.2)
    win = MainWindow(settings, TokenVault(fail.Keyring()), local)
    win.show()
    win._run_task = asyncio.ensure_future(win.run())  # type: ignore[attr-defined]
    qloop.until(lambda: LOCAL_NAME in win.pages and win.pages[LOCAL_NAME].conn.last_snapshot, timeout=30, what="local data")
    yield win
    if not win._run_task.done():  # type: ignore[attr-defined]
        answers.default = True
        win.close()
        qloop.run(win._run_task, 60)  # type: ignore[attr-defined]
    win.deleteLater()
