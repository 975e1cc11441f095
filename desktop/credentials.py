"""Tokens for remote connections: in the OS keyring, never in QSettings or any plain file.

Where no secure keyring backend exists (a headless Linux box without a Secret
Service, say) the vault says so in one sentence and keeps tokens for this
session only, so the operator knows they will be asked again next time. A
backend that keeps secrets in a plain or self-encrypted file (keyrings.alt's,
which a test install may make the default) or drops them (null, fail) does
not count as a keyring.
"""

from __future__ import annotations

import contextlib
import logging

import keyring
from keyring.backend import KeyringBackend
from keyring.backends import chainer
from keyring.errors import KeyringError

log = logging.getLogger("slotdeck.desktop.credentials")

SERVICE = "slotdeck"

# backends that are no OS keyring: they fail, forget, or keep secrets in a file of the user's home
INSECURE_MODULES = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")


def is_secure(backend: KeyringBackend) -> bool:
    """Whether `backend` keeps secrets in an OS keyring (a chain: only if every backend in it does)."""
    if isinstance(backend, chainer.ChainerBackend):
        members = list(backend.backends)
        return bool(members) and all(is_secure(member) for member in members)
    module = type(backend).__module__
    return not any(module == name or module.startswith(name + ".") for name in INSECURE_MODULES)


class TokenVault:
    """`get/put/forget` a token by server URL; falls back to memory when the keyring cannot keep it."""

    def __init__(self, backend: KeyringBackend | None = None) -> None:
        self._backend = backend or keyring.get_keyring()
        self._session: dict[str, str] = {}
        self.problem: str | None = None
        if not is_secure(self._backend):
            self.problem = (
                "No secure system keyring is available, so tokens are kept for this session only "
                "and will be asked for again next time."
            )
            log.warning("%s (keyring backend: %s)", self.problem, type(self._backend).__name__)

    @property
    def persistent(self) -> bool:
        return self.problem is None

    def get(self, url: str) -> str | None:
        if url in self._session:
            return self._session[url]
        if not self.persistent:
            return None
        try:
            return self._backend.get_password(SERVICE, url)
        except KeyringError as exc:
            self._degrade(exc)
            return None

    def put(self, url: str, token: str) -> None:
        if self.persistent:
            try:
                self._backend.set_password(SERVICE, url, token)
                self._session.pop(url, None)
                return
            except KeyringError as exc:
                self._degrade(exc)
        self._session[url] = token

    def forget(self, url: str) -> None:
        self._session.pop(url, None)
        if self.persistent:
            with contextlib.suppress(KeyringError):  # nothing stored for it: already forgotten
                self._backend.delete_password(SERVICE, url)

    def _degrade(self, exc: Exception) -> None:
        self.problem = f"The system keyring failed ({exc.__class__.__name__}); tokens are kept for this session only."
        log.warning("%s", self.problem)
