"""Tokens in the keyring (never in settings), remembered connections and layout, and notifications."""

from __future__ import annotations

from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import PasswordDeleteError
from keyrings.alt.file import PlaintextKeyring
from PySide6.QtCore import QByteArray, QSettings

from desktop.connection import ConnectionSpec, LinkState
from desktop.credentials import TokenVault, is_secure
from desktop.notify import Notifier
from desktop.settings import AppSettings
from embedded_service.model import Marks, QueueConfig, QueueStats, Snapshot, Totals


class OsKeyring(KeyringBackend):
    """Stands in for the OS keyring (Secret Service, Keychain, Credential Manager): a boundary of this app.
    Its data lives in a dict the test owns, so a new vault on it finds what an earlier one stored."""

    priority = 1  # type: ignore[assignment]

    def __init__(self, data: dict[tuple[str, str], str]) -> None:
        super().__init__()
        self.data = data

    def get_password(self, service: str, username: str) -> str | None:
        return self.data.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.data[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.data:
            raise PasswordDeleteError(username)
        del self.data[(service, username)]


@pytest.fixture
def file_keyring() -> OsKeyring:
    return OsKeyring({})


def test_a_plaintext_file_keyring_is_not_taken_for_a_keyring(tmp_path: Path) -> None:
    plaintext = PlaintextKeyring()
    plaintext.file_path = str(tmp_path / "keyring.cfg")  # type: ignore[misc]
    for backend in (plaintext, null.Keyring(), fail.Keyring()):
        vault = TokenVault(backend)
        assert not vault.persistent and "session only" in (vault.problem or ""), type(backend)
        vault.put("https://gpu1:8765", "s3cret-token")
        assert vault.get("https://gpu1:8765") == "s3cret-token"
    assert not (tmp_path / "keyring.cfg").exists(), "no token written to a plain file"
    assert not is_secure(chainer.ChainerBackend())  # this test install's chain holds keyrings.alt's plaintext file


def test_tokens_go_to_the_keyring_and_survive_a_new_vault(file_keyring: OsKeyring) -> None:
    vault = TokenVault(file_keyring)
    assert vault.persistent and vault.problem is None
    vault.put("https://gpu1:8765", "s3cret-token")
    assert TokenVault(file_keyring).get("https://gpu1:8765") == "s3cret-token"
    vault.forget("https://gpu1:8765")
    assert TokenVault(file_keyring).get("https://gpu1:8765") is None
    vault.forget("https://never-stored")  # harmless


def test_without_a_keyring_the_vault_says_so_and_keeps_tokens_for_the_session() -> None:
    vault = TokenVault(fail.Keyring())
    assert not vault.persistent
    assert "session only" in (vault.problem or "")
    vault.put("http://127.0.0.1:9", "tok")
    assert vault.get("http://127.0.0.1:9") == "tok"
    assert TokenVault(fail.Keyring()).get("http://127.0.0.1:9") is None, "nothing outlives the session"


def test_connections_and_layout_are_remembered_but_never_tokens(tmp_path: Path, file_keyring) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "slotdeck.ini"
    settings = AppSettings(QSettings(str(path), QSettings.Format.IniFormat))
    specs = [ConnectionSpec("gpu box", "https://gpu1:8765", ca_file="/etc/ca.pem"), ConnectionSpec("ci", "http://127.0.0.1:9")]
    settings.save_remote_connections(specs)
    TokenVault(file_keyring).put("https://gpu1:8765", "s3cret-token")
    settings.save_window_state(QByteArray(b"geom"), QByteArray(b"state"))
    settings.set_theme("dark")

    again = AppSettings(QSettings(str(path), QSettings.Format.IniFormat))
    assert again.remote_connections() == specs
    assert again.theme() == "dark"
    assert again.window_state() == (QByteArray(b"geom"), QByteArray(b"state"))
    assert "s3cret-token" not in path.read_text()


def queue(waiting: int, stuck: int = 0) -> Snapshot:
    stats = QueueStats(
        config=QueueConfig(name="chat"), in_use=1, waiting=waiting, owners=1, marks=Marks(), totals=Totals(), stuck=stuck
    )
    return Snapshot(seq=1, at=0.0, queues=[stats])


def test_notifications_fire_once_per_crossing() -> None:
    notifier = Notifier(waiting_threshold=10)
    seen: list[str] = []
    notifier.notified.connect(lambda title, text: seen.append(title))
    for waiting in (5, 11, 15, 12, 3, 20):
        notifier.check_snapshot("local", queue(waiting))
    assert seen == ["chat is backing up", "chat is backing up"]
    notifier.check_snapshot("local", queue(0, stuck=1))
    notifier.check_snapshot("local", queue(0, stuck=1))
    notifier.check_snapshot("local", queue(0, stuck=2))
    assert seen[2:] == ["Stuck work in chat", "Stuck work in chat"]
    notifier.check_state("gpu1", LinkState.reconnecting.value, "refused")
    notifier.check_state("gpu1", LinkState.reconnecting.value, "refused again")
    notifier.check_state("gpu1", LinkState.live.value, "")
    notifier.check_state("gpu1", LinkState.reconnecting.value, "down")
    assert seen[4:] == ["Lost connection to gpu1", "Lost connection to gpu1"]
