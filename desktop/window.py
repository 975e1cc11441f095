"""`MainWindow`: connections on the left, one page per shown connection side by side.

The window owns the connections and the optional local service. Closing it
with work running on the local service asks first: quitting interrupts that
work, which is recorded and re-queued when the service next starts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QColor, QIcon, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QSystemTrayIcon,
)

from .connection import Connection, ConnectionSpec, LinkState
from .credentials import TokenVault
from .local import LocalService
from .notify import Notifier
from .page import TABS, ConnectionPage
from .settings import AppSettings
from .theme import THEMES, app_icon, apply_theme
from .views import confirm
from .views.connect_dialog import ConnectDialog

log = logging.getLogger("slotdeck.desktop.window")

STATE_COLOURS = {
    LinkState.live.value: "#2da44e",
    LinkState.connecting.value: "#d4a72c",
    LinkState.reconnecting.value: "#e16f24",
    LinkState.unauthorized.value: "#cf222e",
    LinkState.failed.value: "#cf222e",
    LinkState.closed.value: "#8c959f",
}


@functools.cache
def state_icon(state: str) -> QIcon:
    """A filled dot in the state's colour (drawn, so it needs no emoji font and stays sharp)."""
    pixmap = QPixmap(32, 32)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(STATE_COLOURS.get(state, "#8c959f")))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(6, 6, 20, 20)
    painter.end()
    return QIcon(pixmap)


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

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self.splitter)
        self.connections = QListWidget()
        self.connections.itemChanged.connect(self._on_item_toggled)
        dock = QDockWidget("Connections", self)
        dock.setObjectName("connectionsDock")
        dock.setWidget(self.connections)
        self.connections.setMinimumWidth(300)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)

        self.tray = QSystemTrayIcon(app_icon(), self) if QSystemTrayIcon.isSystemTrayAvailable() else None
        if self.tray is not None:
            self.tray.setToolTip("SlotDeck")
            self.tray.show()
        self.notifier = Notifier(settings.waiting_alert(), self.tray)
        self.notifier.notified.connect(lambda title, text: self.statusBar().showMessage(f"{title}: {text}", 15000))
        self._build_menus(dock)

        self._ages = QTimer(self)
        self._ages.setInterval(1000)
        self._ages.timeout.connect(self._refresh_list)
        self._ages.start()
        geometry, state = settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        if vault.problem:
            self.statusBar().showMessage(vault.problem, 20000)

    # ------------------------------------------------------------- menus

    def _build_menus(self, dock: QDockWidget) -> None:
        def action(menu_name: str, text: str, shortcut: QKeySequence | str | None, slot: object) -> QAction:
            act = QAction(text, self)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            menus[menu_name].addAction(act)
            return act

        bar = self.menuBar()
        menus = {name: bar.addMenu(name) for name in ("&File", "&View", "&Help")}
        action("&File", "&Add server…", QKeySequence.StandardKey.New, self.add_connection_dialog)
        action("&File", "&Remove selected server", None, self._remove_selected)
        action("&File", "&Submit command job…", "Ctrl+J", self._submit_on_current)
        menus["&File"].addSeparator()
        action("&File", "&Quit", QKeySequence.StandardKey.Quit, self.close)
        for i, label in enumerate(TABS):
            action("&View", label.replace("&&", "&"), f"Ctrl+{i + 1}", lambda _=False, i=i: self._show_tab(i))
        menus["&View"].addSeparator()
        action("&View", "&Dark theme / light theme", "Ctrl+T", self.toggle_theme)
        action("&View", "Pause / resume &live graphs", "Ctrl+L", self._toggle_live)
        menus["&View"].addAction(dock.toggleViewAction())
        action("&Help", "&About SlotDeck", None, self._about)

    def _current_page(self) -> ConnectionPage | None:
        focused = QApplication.focusWidget()
        for page in self.pages.values():
            if focused is not None and page.isAncestorOf(focused):
                return page
        visible = [p for p in self.pages.values() if p.isVisible()]
        return visible[0] if visible else None

    def _show_tab(self, index: int) -> None:
        for page in self.pages.values():
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

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About SlotDeck",
            "SlotDeck: queues with concurrency slots for slow GPU and LLM work, and this dashboard to watch and steer them.",
        )

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
        self.splitter.addWidget(page)
        conn.action_done.connect(lambda what: self.statusBar().showMessage(f"{spec.name}: done: {what}", 8000))
        conn.action_failed.connect(lambda what, why: self._action_failed(spec.name, what, why))
        conn.state_changed.connect(lambda *_: self._refresh_list())
        self.notifier.watch(conn)
        item = QListWidgetItem(spec.name)
        item.setData(Qt.ItemDataRole.UserRole, spec.name)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked)
        self.connections.addItem(item)
        conn.start()
        self._refresh_list()
        return page

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
            self.add_connection(spec, token)
            self._save_remotes()

    def _remove_selected(self) -> None:
        item = self.connections.currentItem()
        if item is None:
            return
        name = item.data(Qt.ItemDataRole.UserRole)
        page = self.pages.get(name)
        if page is None or page.conn.spec.local:
            self.statusBar().showMessage("The local service cannot be removed; it stops when you quit.", 8000)
            return
        if not confirm.confirm(self, f"Remove {name}?", f"Stop watching {page.conn.spec.url} and forget its token?"):
            return
        self.pages.pop(name)
        self.connections.takeItem(self.connections.row(item))
        self.vault.forget(page.conn.spec.url)
        self._spawn(page.conn.close())
        page.setParent(None)
        page.deleteLater()
        self._save_remotes()

    def _save_remotes(self) -> None:
        self.settings.save_remote_connections([p.conn.spec for p in self.pages.values() if p.conn.spec.remember])

    def _on_item_toggled(self, item: QListWidgetItem) -> None:
        page = self.pages.get(item.data(Qt.ItemDataRole.UserRole))
        if page is not None:
            page.setVisible(item.checkState() == Qt.CheckState.Checked)

    def _refresh_list(self) -> None:
        self.connections.blockSignals(True)
        for row in range(self.connections.count()):
            item = self.connections.item(row)
            page = self.pages.get(item.data(Qt.ItemDataRole.UserRole))
            if page is None:
                continue
            page.refresh_age()
            conn = page.conn
            item.setIcon(state_icon(conn.state.value))
            age_text = "" if conn.data_age_s() is None else f" · {conn.freshness()}"
            item.setText(f"{conn.name}\n{conn.state.value}{age_text}")
            item.setToolTip(f"{conn.spec.url}\n{conn.detail}")
        self.connections.blockSignals(False)

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
