"""What the dashboard remembers between runs (QSettings): window layout, theme and the list of remote
connections (with a cluster's other instance URLs, listed and learnt). Tokens are never written here;
`credentials.TokenVault` keeps them."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from .connection import ConnectionSpec


class AppSettings:
    def __init__(self, qsettings: QSettings | None = None) -> None:
        self._s = qsettings or QSettings("SlotDeck", "SlotDeck")

    def remote_connections(self) -> list[ConnectionSpec]:
        specs: list[ConnectionSpec] = []
        count = self._s.beginReadArray("connections")
        for i in range(count):
            self._s.setArrayIndex(i)
            name, url = str(self._s.value("name", "")), str(self._s.value("url", ""))
            if name and url:
                ca = self._s.value("ca_file", "")
                extra, learnt = self._urls("extra_urls"), self._urls("learnt_urls")
                specs.append(ConnectionSpec(name, url, ca_file=str(ca) or None, extra_urls=extra, learnt_urls=learnt))
        self._s.endArray()
        return specs

    def _urls(self, key: str) -> tuple[str, ...]:
        """A space-separated list of URLs under the current array entry (a cluster's instances)."""
        return tuple(str(self._s.value(key, "") or "").split())

    def save_remote_connections(self, specs: list[ConnectionSpec]) -> None:
        self._s.remove("connections")
        self._s.beginWriteArray("connections", len(specs))
        for i, spec in enumerate(specs):
            self._s.setArrayIndex(i)
            self._s.setValue("name", spec.name)
            self._s.setValue("url", spec.url)
            self._s.setValue("ca_file", spec.ca_file or "")
            self._s.setValue("extra_urls", " ".join(spec.extra_urls))
            self._s.setValue("learnt_urls", " ".join(spec.learnt_urls))
        self._s.endArray()
        self._s.sync()

    def theme(self) -> str:
        return str(self._s.value("theme", "light"))

    def set_theme(self, theme: str) -> None:
        self._s.setValue("theme", theme)

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        geometry, state = self._s.value("window/geometry"), self._s.value("window/state")
        return (
            geometry if isinstance(geometry, QByteArray) else None,
            state if isinstance(state, QByteArray) else None,
        )

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self._s.setValue("window/geometry", geometry)
        self._s.setValue("window/state", state)
        self._s.sync()

    def _value(self, key: str, default: object) -> Any:
        """A stored value as QSettings returns it (a str, int or float, by backend); callers convert it."""
        return self._s.value(key, default)

    def waiting_alert(self) -> int:
        """Waiters in one queue above which the operator is notified."""
        try:
            return max(1, int(self._value("alerts/waiting", 20)))
        except (TypeError, ValueError):
            return 20

    def set_waiting_alert(self, threshold: int) -> None:
        self._s.setValue("alerts/waiting", max(1, int(threshold)))

    def stale_after_s(self) -> float:
        """Seconds without a snapshot after which a connection's figures are marked stale (2 to 300)."""
        try:
            return min(300.0, max(2.0, float(self._value("refresh/stale_after_s", 5.0))))
        except (TypeError, ValueError):
            return 5.0

    def set_stale_after_s(self, seconds: float) -> None:
        self._s.setValue("refresh/stale_after_s", float(seconds))

    def redraws_per_s(self) -> int:
        """Most graph redraws per second (1 to 10)."""
        try:
            return min(10, max(1, int(self._value("refresh/redraws_per_s", 5))))
        except (TypeError, ValueError):
            return 5

    def set_redraws_per_s(self, rate: int) -> None:
        self._s.setValue("refresh/redraws_per_s", int(rate))

    def local_port(self) -> int | None:
        """The port the local service listens on, chosen once and kept (None: not chosen yet)."""
        try:
            port = int(self._value("local/port", 0))
        except (TypeError, ValueError):
            return None
        return port if 0 < port < 65536 else None

    def set_local_port(self, port: int) -> None:
        self._s.setValue("local/port", int(port))
        self._s.sync()
