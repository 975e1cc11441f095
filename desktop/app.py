"""`slotdeck gui`: the dashboard under a qasync loop, with the local service unless --no-local."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import qasync
from PySide6.QtWidgets import QApplication

from .credentials import TokenVault
from .local import LocalService
from .settings import AppSettings
from .theme import app_icon, apply_theme
from .window import MainWindow


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slotdeck gui", description="SlotDeck operations dashboard")
    parser.add_argument("--no-local", action="store_true", help="do not start the embedded local service")
    parser.add_argument("--store", help="store URL of the local service (default: SQLite in the data directory)")
    parser.add_argument("--theme", choices=("light", "dark"), help="colour theme (remembered)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("SlotDeck")
    app.setOrganizationName("SlotDeck")
    app.setWindowIcon(app_icon())
    settings = AppSettings()
    if args.theme:
        settings.set_theme(args.theme)
    settings.set_theme(apply_theme(app, settings.theme()))

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    local = None if args.no_local else LocalService(args.store)
    window = MainWindow(settings, TokenVault(), local)
    window.show()
    with loop:
        loop.run_until_complete(window.run())
    return 0
