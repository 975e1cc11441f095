"""`ConnectDialog`: add a remote server (name, URL, token, optional CA certificate)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from embedded_service.localmode import is_loopback

from ..connection import ConnectionSpec


def check_url(url: str) -> str | None:
    """Why `url` cannot name a SlotDeck server, or None. Plain http is for this machine only: elsewhere the
    bearer token would cross the network in clear."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        return "The URL must start with http:// or https://"
    if not parsed.hostname:
        return "The URL names no host"
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        return "Use https:// for another machine: over http:// its token would cross the network unencrypted"
    return None


def check_ca_file(path: str | None) -> str | None:
    """Why `path` cannot be the CA certificate file, or None (no file is fine: the system's CAs are used)."""
    if path and not Path(path).expanduser().is_file():
        return f"There is no CA certificate file at {path}"
    return None


class ConnectDialog(QDialog):
    def __init__(self, taken_names: set[str], keyring_problem: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a SlotDeck server")
        self._taken = taken_names
        self.name = QLineEdit()
        self.url = QLineEdit()
        self.url.setPlaceholderText("https://slots.example.org:8765")
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("from: slotdeck token create --role operator --name NAME")
        self.ca = QLineEdit()
        self.ca.setPlaceholderText("optional: CA certificate (PEM) for a private TLS certificate")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca)
        ca_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("URL", self.url)
        form.addRow("Token", self.token)
        form.addRow("CA certificate", ca_row)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #cf222e")
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        if keyring_problem:
            note = QLabel(keyring_problem)
            note.setWordWrap(True)
            layout.addWidget(note)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "CA certificate", "", "PEM certificates (*.pem *.crt);;All files (*)")
        if path:
            self.ca.setText(path)

    def problem(self) -> str | None:
        """What is wrong with the form, in words, or None."""
        name, url = self.name.text().strip(), self.url.text().strip()
        if not name:
            return "Give the server a name"
        if name in self._taken:
            return f"A connection named {name} exists already"
        return check_url(url) or check_ca_file(self.ca.text().strip())

    def _accept(self) -> None:
        problem = self.problem()
        if problem:
            self.error.setText(problem)
            return
        self.accept()

    def spec(self) -> ConnectionSpec:
        ca_file = self.ca.text().strip() or None
        return ConnectionSpec(name=self.name.text().strip(), url=self.url.text().strip(), ca_file=ca_file)

    def token_text(self) -> str | None:
        return self.token.text().strip() or None
