"""`MainWindow`: the fleet (one row per server) above the chosen server's pages at full width.

The window never opens larger than the screen it is on, and a remembered
geometry is brought back within that screen. The window owns the connections and the optional local service. Closing it
with work running on the local service asks first: quitting interrupts that
work, which is recorded and re-queued when the service next starts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from embedded_service import __version__

from .connection import Connection, ConnectionSpec, LinkState
from .credentials import TokenVault
from .local import LocalService
from .notify import Notifier
from .page import TABS, ConnectionPage
from .settings import AppSettings
from .theme import THEMES, app_icon, apply_theme
from .views import confirm
from .views.alerts import AlertHistoryDialog
from .views.connect_dialog import ConnectDialog
from .views.fleet import FleetView
from .views.settings_dialog import SettingsDialog

log = logging.getLogger("slotdeck.desktop.window")


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings, vault: TokenVault, local: LocalService | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.vault = vault
        self.local = local
        self.pages: dict[str, ConnectionPage] = {}
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Future[None]] = set()
        self._closing = False
        self.setWindowTitle("SlotDeck")
        self.setWindowIcon(app_icon())
        self.resize(1400, 880)

        self.notifier = Notifier(settings.waiting_alert())
        self.fleet = FleetView(self.notifier.active_count)
        self.fleet.server_chosen.connect(self.show_server)
        self.stack = QStackedWidget()
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(4, 4, 4, 0)
        column.addWidget(self.fleet)  # as tall as its rows (up to ten), then it scrolls
        column.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.tray = QSystemTrayIcon(app_icon(), self) if QSystemTrayIcon.isSystemTrayAvailable() else None
        if self.tray is not None:
            self.tray.setToolTip("SlotDeck")
            self.tray.show()
        self.notifier.tray = self.tray
        self.notifier.notified.connect(lambda title, text: self.statusBar().showMessage(f"{title}: {text}", 15000))
        self._build_menus()

        self._ages = QTimer(self)
        self._ages.setInterval(1000)
        self._ages.timeout.connect(self._refresh_ages)
        self._ages.start()
        geometry, state = settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self.fit_to_screen()
        if vault.problem:
            self.statusBar().showMessage(vault.problem, 20000)

    # ------------------------------------------------------------- menus

    def fit_to_screen(self) -> None:
        """Shrink the window to the available screen and move it onto it (a remembered size may be larger,
        or from a screen no longer there)."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        area = screen.availableGeometry()
        if self.isMaximized() or self.isFullScreen():
            return
        frame = self.frameGeometry()
        extra_w, extra_h = frame.width() - self.width(), frame.height() - self.height()
        width = min(self.width(), area.width() - extra_w)
        height = min(self.height(), area.height() - extra_h)
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)
        x = min(max(frame.x(), area.left()), area.right() - width - extra_w + 1)
        y = min(max(frame.y(), area.top()), area.bottom() - height - extra_h + 1)
        if (x, y) != (frame.x(), frame.y()):
            self.move(x, y)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self.fit_to_screen)  # once shown, the frame's size is known

    def show_server(self, name: str) -> None:
        """Show this server's pages at full width (and select its fleet row)."""
        page = self.pages.get(name)
        if page is None:
            return
        if self.stack.currentWidget() is not page:
            self.stack.setCurrentWidget(page)
        for each in self.pages.values():
            each.set_active(each is page)
        if self.fleet.chosen() != name:
            self.fleet.choose(name)

    def _build_menus(self) -> None:
        def action(
            menu_name: str, text: str, shortcut: QKeySequence | QKeySequence.StandardKey | str | None, slot: object
        ) -> QAction:
            act = QAction(text, self)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            menus[menu_name].addAction(act)
            return act

        bar = self.menuBar()
        menus = {name: bar.addMenu(name) for name in ("&File", "&View", "&Help")}
        action("&File", "&Add server…", QKeySequence.StandardKey.New, self.add_connection_dialog)
        action("&File", "&Edit server token…", None, self._edit_token)
        action("&File", "&Remove selected server", None, self._remove_selected)
        action("&File", "&Submit command job…", "Ctrl+J", self._submit_on_current)
        menus["&File"].addSeparator()
        action("&File", "&Quit", QKeySequence.StandardKey.Quit, self.close)
        for i, label in enumerate(TABS):
            # "&&" is a literal "&" in a tab label; in a menu the same text must not underline anything either
            action("&View", label, f"Ctrl+{i + 1}", lambda _=False, i=i: self._show_tab(i))
        menus["&View"].addSeparator()
        fleet = action("&View", "&Servers table", "Ctrl+0", lambda checked: self.fleet.setVisible(checked))
        fleet.setCheckable(True)
        fleet.setChecked(True)
        action("&View", "&Dark theme / light theme", "Ctrl+T", self.toggle_theme)
        action("&View", "Pause / resume &live graphs", "Ctrl+L", self._toggle_live)
        menus["&View"].addSeparator()
        action("&View", "Alert &history…", None, self._show_alerts)
        action("&View", "Se&ttings…", "Ctrl+,", self._show_settings)
        action("&Help", "&About SlotDeck", None, self._about)
        self.menus = menus

    def _current_page(self) -> ConnectionPage | None:
        page = self.stack.currentWidget()
        return page if isinstance(page, ConnectionPage) else None

    def _show_tab(self, index: int) -> None:
        page = self._current_page()
        if page is not None:
            page.show_tab(index)

    def _submit_on_current(self) -> None:
        page = self._current_page()
        if page is not None:
            page.show_tab(TABS.index("Jobs"))
            page.jobs.submit_button.click()

    def _toggle_live(self) -> None:
        for page in self.pages.values():
            page.overview.set_live(not page.overview.live)

    def toggle_theme(self) -> None:
        app = QApplication.instance()
        if isinstance(app, QApplication):
            current = self.settings.theme()
            chosen = apply_theme(app, THEMES[(THEMES.index(current) + 1) % len(THEMES)] if current in THEMES else "dark")
            self.settings.set_theme(chosen)
            for page in self.pages.values():
                page.overview.restyle()

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About SlotDeck",
            f"SlotDeck {__version__}\n\nQueues with concurrency slots for slow GPU and LLM work, "
            "and this dashboard to watch and steer them.",
        )

    def _show_alerts(self) -> None:
        dialog = AlertHistoryDialog(self.notifier, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def _show_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            dialog.save()
            self.notifier.waiting_threshold = self.settings.waiting_alert()
            app = QApplication.instance()
            if isinstance(app, QApplication) and self.settings.theme() != dialog.initial_theme:
                apply_theme(app, self.settings.theme())
                for page in self.pages.values():
                    page.overview.restyle()
            for page in self.pages.values():
                page.conn.stale_after_s = self.settings.stale_after_s()

    def _edit_token(self) -> None:
        page = self._current_page()
        if page is None or page.conn.spec.local:
            self.statusBar().showMessage("Choose a remote server in the servers table first.", 8000)
            return
        dialog = ConnectDialog(set(self.pages) - {page.conn.name}, self.vault.problem, self, edit=page.conn.spec)
        if not dialog.exec():
            return
        spec, token = dialog.spec(), dialog.token_text()
        if spec.url.rstrip("/") == page.conn.spec.url.rstrip("/"):
            spec = dataclasses.replace(spec, learnt_urls=page.conn.spec.learnt_urls)  # same deployment
        if token:
            self.vault.put(spec.url, token)
        old = page.conn
        self.pages.pop(old.name)
        self.stack.removeWidget(page)
        self._spawn(old.close())
        page.deleteLater()
        self.add_connection(spec, token or self.vault.get(spec.url))
        self._save_remotes()

    # ------------------------------------------------------- connections

    def add_connection(self, spec: ConnectionSpec, token: str | None) -> ConnectionPage:
        """Create the connection and its page, show it, and start connecting (a name in use gets a suffix)."""
        if spec.name in self.pages:
            n = 2
            while f"{spec.name} ({n})" in self.pages:
                n += 1
            spec = dataclasses.replace(spec, name=f"{spec.name} ({n})")
        conn = Connection(spec, token, parent=self)
        page = ConnectionPage(conn)
        self.pages[spec.name] = page
        self.stack.addWidget(page)
        conn.action_done.connect(lambda what: self.statusBar().showMessage(f"{spec.name}: done: {what}", 8000))
        conn.action_failed.connect(lambda what, why: self._action_failed(spec.name, what, why))
        conn.state_changed.connect(lambda *_: self.fleet.model.refresh())
        conn.state_changed.connect(lambda state, _detail: self._back_online(conn, state))
        conn.urls_learnt.connect(lambda _urls: self._save_remotes())
        conn.stale_after_s = self.settings.stale_after_s()
        self.notifier.watch(conn)
        chosen = self.fleet.chosen() or spec.name
        page.set_active(chosen == spec.name)
        self.fleet.set_connections([p.conn for p in self.pages.values()], chosen)
        self.show_server(chosen)
        conn.start()
        return page

    def _back_online(self, conn: Connection, state: str) -> None:
        """Live again (a cluster's failover takes about a second): the "Lost connection" line goes, saying where
        the connection is now, instead of standing for its full 15 s over a working connection."""
        if state == LinkState.live.value and self.statusBar().currentMessage().startswith(
            f"Lost connection to {conn.name}:"
        ):
            self.statusBar().showMessage(f"{conn.name}: connected again via {conn.current_url}", 8000)

    def _action_failed(self, server: str, what: str, why: str) -> None:
        self.statusBar().showMessage(f"{server}: could not {what}: {why}", 15000)
        self._tell(QMessageBox.Icon.Warning, f"Could not {what} on {server}:\n\n{why}")

    def _tell(self, icon: QMessageBox.Icon, text: str) -> None:
        """A message that does not block: a modal exec() inside an asyncio task would stall every other task."""
        box = QMessageBox(icon, "SlotDeck", text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def add_connection_dialog(self) -> None:
        dialog = ConnectDialog(set(self.pages), self.vault.problem, self)
        if dialog.exec():
            spec, token = dialog.spec(), dialog.token_text()
            if token:
                self.vault.put(spec.url, token)
            page = self.add_connection(spec, token)
            self.show_server(page.conn.name)
            self._save_remotes()

    def _remove_selected(self) -> None:
        name = self.fleet.chosen()
        if name is None:
            return
        page = self.pages.get(name)
        if page is None or page.conn.spec.local:
            self.statusBar().showMessage("The local service cannot be removed; it stops when you quit.", 8000)
            return
        if not confirm.confirm(self, f"Remove {name}?", f"Stop watching {page.conn.spec.url} and forget its token?"):
            return
        self.pages.pop(name)
        self.stack.removeWidget(page)
        remaining = next(iter(self.pages), None)
        self.fleet.set_connections([p.conn for p in self.pages.values()], remaining)
        if remaining is not None:
            self.show_server(remaining)
        self.vault.forget(page.conn.spec.url)
        self._spawn(page.conn.close())
        page.setParent(None)
        page.deleteLater()
        self._save_remotes()

    def _save_remotes(self) -> None:
        self.settings.save_remote_connections([p.conn.spec for p in self.pages.values() if p.conn.spec.remember])

    def _refresh_ages(self) -> None:
        for page in self.pages.values():
            page.refresh_age()

    # -------------------------------------------------------------- life

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Start the local service (if any) and saved remotes, then wait until the window is closed."""
        if self.local is not None:
            self.statusBar().showMessage("Starting the local service…")
            try:
                spec, token = await self.local.start()
            except Exception as exc:  # a broken data dir or store must leave the remotes usable
                log.exception("the local service did not start")
                self.local = None
                self._tell(QMessageBox.Icon.Critical, f"The local service did not start:\n\n{exc}")
            else:
                self.add_connection(spec, token)
                self.statusBar().showMessage(f"Local service at {spec.url}", 8000)
        for spec in self.settings.remote_connections():
            if spec.name not in self.pages:
                self.add_connection(spec, self.vault.get(spec.url))
        await self._closed.wait()

    async def first_page_with_data(self, timeout_s: float = 60.0) -> ConnectionPage:
        """The first connection page to receive a snapshot (for scripted runs: screenshots, benchmarks)."""
        async with asyncio.timeout(timeout_s):
            while True:
                page = next((p for p in self.pages.values() if p.conn.last_snapshot is not None), None)
                if page is not None:
                    return page
                await asyncio.sleep(0.1)

    def running_local_jobs(self) -> int:
        page = next((p for p in self.pages.values() if p.conn.spec.local), None)
        snap = page.conn.last_snapshot if page is not None else None
        return 0 if snap is None else sum(1 for lease in snap.leases if lease.job_id)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._closed.is_set():
            event.accept()
            return
        event.ignore()
        if self._closing:
            return
        running = self.running_local_jobs()
        if running and not confirm.confirm(
            self,
            "Quit with jobs running?",
            f"{running} job(s) are running on the local service. Quitting stops them after a short grace period; "
            "they go back to the queue and run again when SlotDeck next starts.",
        ):
            return
        self._closing = True
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self._spawn(self._shutdown())

    async def _shutdown(self) -> None:
        self.statusBar().showMessage("Stopping…")
        for page in self.pages.values():
            await page.conn.close()
        if self.local is not None:
            await self.local.stop()
        if self.tray is not None:
            self.tray.hide()
        self._closed.set()
        self.hide()  # not close(): Qt would quit the app and stop the loop before run() returns
