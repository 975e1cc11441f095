"""`slotdeck gui`: the dashboard under a qasync loop, with the local service unless --no-local."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from urllib.parse import urlparse

import qasync
from PySide6.QtWidgets import QApplication

from embedded_service.api.logs import demote_request_logs

from .connection import ConnectionSpec
from .credentials import TokenVault
from .display import NO_DISPLAY_EXIT, no_display_reason
from .instance_urls import check_url
from .local import LocalService
from .local_port import choose_local_port
from .settings import AppSettings
from .theme import app_icon, apply_theme
from .window import MainWindow


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slotdeck gui", description="SlotDeck operations dashboard")
    parser.add_argument("--no-local", action="store_true", help="do not start the embedded local service")
    parser.add_argument("--store", help="store URL of the local service (default: SQLite in the data directory)")
    parser.add_argument("--theme", choices=("light", "dark"), help="colour theme (remembered)")
    parser.add_argument(
        "--port",
        type=int,
        help="port of the local service on 127.0.0.1 (remembered; by default one is chosen at the first start and kept)",
    )
    parser.add_argument(
        "--connect",
        metavar="URL",
        action="append",
        default=[],
        help="also watch this server for this run (token: SLOTDECK_TOKEN, else the keyring's for that URL)",
    )
    args = parser.parse_args(argv)
    if args.port is not None and not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port}: a port is between 1 and 65535")
    for url in args.connect:
        problem = check_url(url)
        if problem:
            parser.error(f"--connect {url}: {problem}")
    return args


def build(argv: list[str]) -> tuple[QApplication, qasync.QEventLoop, MainWindow]:
    """The application, its qasync loop and the main window (shown), ready for `window.run()`."""
    args = parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("SlotDeck")
    app.setOrganizationName("SlotDeck")
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)  # MainWindow.run() decides when the app ends, after a clean shutdown
    settings = AppSettings()
    settings.set_theme(apply_theme(app, args.theme or settings.theme()))
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    port_note = None
    if args.no_local:
        local = None
    else:
        port, port_note = choose_local_port(settings, args.port)
        local = LocalService(args.store, port=port)
    vault = TokenVault()
    window = MainWindow(settings, vault, local)
    if port_note:
        window.statusBar().showMessage(port_note, 30000)
    token = os.environ.get("SLOTDECK_TOKEN")
    for url in args.connect:
        spec = ConnectionSpec(name=urlparse(url).netloc, url=url, remember=False)
        window.add_connection(spec, token or vault.get(url))
    window.show()
    return app, loop, window


def main(argv: list[str] | None = None) -> int:
    """Run the dashboard; 2 (and what to run instead) where no window can be shown."""
    reason = no_display_reason()
    if reason is not None and not {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):
        print(reason, file=sys.stderr)
        return NO_DISPLAY_EXIT
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    demote_request_logs()  # one line per HTTP request only with DEBUG
    _, loop, window = build(sys.argv[1:] if argv is None else argv)
    with loop:
        loop.run_until_complete(window.run())
    return 0
