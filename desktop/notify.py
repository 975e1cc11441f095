"""`Notifier`: desktop notifications an operator would otherwise miss.

Fires once per crossing, not on every snapshot: waiting rises above the
threshold in a queue, a queue's stuck count grows, a connection is lost. Shows
them in the system tray where there is one; `notified` lets the window show
them in its status bar too.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QSystemTrayIcon

from embedded_service.model import Snapshot

from .connection import Connection, LinkState


class Notifier(QObject):
    notified = Signal(str, str)  # title, text

    def __init__(self, waiting_threshold: int, tray: QSystemTrayIcon | None = None) -> None:
        super().__init__()
        self.waiting_threshold = waiting_threshold
        self.tray = tray
        self._over: set[tuple[str, str]] = set()
        self._stuck: dict[tuple[str, str], int] = {}
        self._lost: set[str] = set()

    def watch(self, conn: Connection) -> None:
        conn.snapshot_received.connect(lambda snap: self.check_snapshot(conn.name, snap))
        conn.state_changed.connect(lambda state, detail: self.check_state(conn.name, state, detail))

    def check_snapshot(self, server: str, snap: Snapshot) -> None:
        for q in snap.queues:
            key = (server, q.config.name)
            if q.waiting > self.waiting_threshold and key not in self._over:
                self._over.add(key)
                self._notify(
                    f"{q.config.name} is backing up", f"{server}: {q.waiting} waiting (alert above {self.waiting_threshold})"
                )
            elif q.waiting <= self.waiting_threshold:
                self._over.discard(key)
            if q.stuck > self._stuck.get(key, 0):
                self._notify(f"Stuck work in {q.config.name}", f"{server}: {q.stuck} holder(s) past the stuck threshold")
            self._stuck[key] = q.stuck

    def check_state(self, server: str, state: str, detail: str) -> None:
        if state == LinkState.live.value:
            self._lost.discard(server)
        elif state in (LinkState.reconnecting.value, LinkState.unauthorized.value, LinkState.failed.value) and (
            server not in self._lost
        ):
            self._lost.add(server)
            self._notify(f"Lost connection to {server}", detail)

    def _notify(self, title: str, text: str) -> None:
        self.notified.emit(title, text)
        if self.tray is not None and self.tray.isVisible():
            self.tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Warning, 8000)
