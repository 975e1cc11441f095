"""`Notifier`: desktop notifications an operator would otherwise miss.

Fires once per crossing, not on every snapshot: waiting rises above the
threshold in a queue, a queue's stuck count grows, a connection is lost. Shows
them in the system tray where there is one; `notified` lets the window show
them in its status bar too, and `history` keeps the last `HISTORY_KEPT` for the
alert history pane (so a machine without a tray loses none). `active_count`
says how many alert conditions hold now for one server (the fleet's column).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QSystemTrayIcon

from embedded_service.model import Snapshot

from .connection import Connection, LinkState

HISTORY_KEPT = 500


@dataclass(frozen=True)
class Alert:
    """One notification: wall time (epoch s), server, title, text."""

    at: float
    server: str
    title: str
    text: str


class Notifier(QObject):
    notified = Signal(str, str)  # title, text

    def __init__(self, waiting_threshold: int, tray: QSystemTrayIcon | None = None) -> None:
        super().__init__()
        self.waiting_threshold = waiting_threshold
        self.tray = tray
        self._over: set[tuple[str, str]] = set()
        self._stuck: dict[tuple[str, str], int] = {}
        self._lost: set[str] = set()
        self.history: deque[Alert] = deque(maxlen=HISTORY_KEPT)

    def active_count(self, server: str) -> int:
        """Alert conditions holding now for `server`: queues over the waiting threshold, queues with stuck
        holders, and a lost connection."""
        over = sum(1 for s, _ in self._over if s == server)
        stuck = sum(1 for (s, _), n in self._stuck.items() if s == server and n)
        return over + stuck + (server in self._lost)

    def watch(self, conn: Connection) -> None:
        conn.snapshot_received.connect(lambda snap: self.check_snapshot(conn.name, snap))
        conn.state_changed.connect(lambda state, detail: self.check_state(conn.name, state, detail))

    def check_snapshot(self, server: str, snap: Snapshot) -> None:
        for q in snap.queues:
            key = (server, q.config.name)
            if q.waiting > self.waiting_threshold and key not in self._over:
                self._over.add(key)
                self._notify(
                    server,
                    f"{q.config.name} is backing up",
                    f"{server}: {q.waiting} waiting (alert above {self.waiting_threshold})",
                )
            elif q.waiting <= self.waiting_threshold:
                self._over.discard(key)
            if q.stuck > self._stuck.get(key, 0):
                self._notify(
                    server, f"Stuck work in {q.config.name}", f"{server}: {q.stuck} holder(s) past the stuck threshold"
                )
            self._stuck[key] = q.stuck

    def check_state(self, server: str, state: str, detail: str) -> None:
        if state == LinkState.live.value:
            self._lost.discard(server)
        elif state in (LinkState.reconnecting.value, LinkState.unauthorized.value, LinkState.failed.value) and (
            server not in self._lost
        ):
            self._lost.add(server)
            self._notify(server, f"Lost connection to {server}", detail)

    def _notify(self, server: str, title: str, text: str) -> None:
        self.history.append(Alert(time.time(), server, title, text))
        self.notified.emit(title, text)
        if self.tray is not None and self.tray.isVisible():
            self.tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Warning, 8000)
