"""`ConnectDialog`: add a remote server (name, URL, token, optional CA certificate), or edit a saved one's
URL, CA and token. "Test connection" asks the server who the token is before anything is saved."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
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

from embedded_service.client import AsyncClient, AuthError
from embedded_service.errors import SlotDeckError

from .. import extra_calls
from ..connection import ConnectionSpec
from ..instance_urls import check_url, unique


def check_ca_file(path: str | None) -> str | None:
    """Why `path` cannot be the CA certificate file, or None (no file is fine: the system's CAs are used)."""
    if path and not Path(path).expanduser().is_file():
        return f"There is no CA certificate file at {path}"
    return None


class ConnectDialog(QDialog):
    def __init__(
        self,
        taken_names: set[str],
        keyring_problem: str | None = None,
        parent: QWidget | None = None,
        edit: ConnectionSpec | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a SlotDeck server" if edit is None else f"Edit {edit.name}")
        self.setMinimumWidth(620)  # the placeholders are read whole
        self._taken = taken_names
        self.name = QLineEdit()
        self.name.setPlaceholderText("a short name, e.g. gpu-box")
        self.url = QLineEdit()
        self.url.setPlaceholderText("https://slots.example.org:8765")
        self.extra_urls = QLineEdit()
        self.extra_urls.setPlaceholderText("optional, for a cluster: its other instances' URLs, space-separated")
        self.extra_urls.setToolTip(
            "When the instance at URL stops answering, the connection moves to the next of these "
            "(with the same token). Instances that report their URL are added by themselves."
        )
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("from: slotdeck token create --role operator --name NAME")
        self.show_token = QCheckBox("Show")
        self.show_token.setToolTip("Show or hide the token")
        self.show_token.toggled.connect(
            lambda shown: self.token.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        )
        self.ca = QLineEdit()
        self.ca.setPlaceholderText("optional: CA certificate (PEM) for a private TLS certificate")
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(lambda: asyncio.ensure_future(self.test_connection()))
        self.test_result = QLabel("")
        self.test_result.setWordWrap(True)
        if edit is not None:
            self.name.setText(edit.name)
            self.name.setReadOnly(True)
            self.url.setText(edit.url)
            self.extra_urls.setText(" ".join(edit.extra_urls))
            self.ca.setText(edit.ca_file or "")
            self.token.setPlaceholderText("the new token (leave empty to keep the saved one)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca)
        ca_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("URL", self.url)
        form.addRow("Other instances", self.extra_urls)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.show_token)
        form.addRow("Token", token_row)
        form.addRow("CA certificate", ca_row)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.test_result, 1)
        form.addRow("", test_row)
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
        return check_url(url) or self._extra_problem() or check_ca_file(self.ca.text().strip())

    def _extra_problem(self) -> str | None:
        for url in self.extra_url_list():
            problem = check_url(url)
            if problem:
                return f"Other instance {url}: {problem[0].lower()}{problem[1:]}"
        return None

    def extra_url_list(self) -> tuple[str, ...]:
        """The other instance URLs as typed (split on spaces and commas), each once, without the main URL."""
        typed = self.extra_urls.text().replace(",", " ").split()
        main = self.url.text().strip().rstrip("/")
        return tuple(url for url in unique(typed) if url != main)

    def _accept(self) -> None:
        problem = self.problem()
        if problem:
            self.error.setText(problem)
            return
        self.accept()

    async def test_connection(self) -> str:
        """Reach the server with the URL, CA and token as typed; says what it found (also shown in the dialog)."""
        problem = check_url(self.url.text().strip()) or check_ca_file(self.ca.text().strip())
        if problem:
            return self._tested(problem, ok=False)
        self.test_result.setText("Testing…")
        self.test_button.setEnabled(False)
        try:
            spec = self.spec()
            client = AsyncClient(spec.url, self.token_text(), verify=spec.ca_file or True, timeout=10.0)
            try:
                health = await client.health()
                who = await extra_calls.whoami(client)
            finally:
                await client.close()
        except AuthError as exc:
            return self._tested(f"The server refused the token: {exc}", ok=False)
        except (SlotDeckError, OSError, ValueError) as exc:
            return self._tested(f"Could not connect: {exc}", ok=False)
        finally:
            self.test_button.setEnabled(True)
        version = getattr(health, "version", "")
        role = f"token {who['name']!r}, role {who['role']}" if who else "this server does not say the token's role"
        return self._tested(f"Connected to SlotDeck {version}: {role}.", ok=True)

    def _tested(self, text: str, ok: bool) -> str:
        self.test_result.setText(text)
        self.test_result.setStyleSheet("color: #1a7f37" if ok else "color: #cf222e")
        return text

    def spec(self) -> ConnectionSpec:
        ca_file = self.ca.text().strip() or None
        return ConnectionSpec(
            name=self.name.text().strip(), url=self.url.text().strip(), ca_file=ca_file, extra_urls=self.extra_url_list()
        )

    def token_text(self) -> str | None:
        return self.token.text().strip() or None
