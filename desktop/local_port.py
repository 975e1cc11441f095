"""The local service's port, chosen once and kept, so that scripts and bookmarks pointed at it keep working.

`choose_local_port(settings, requested)`: `requested` (from `slotdeck gui --port`) is stored and used; else
the stored port; else a free loopback port is picked now and stored. A stored port another program holds
is not stolen: a free one is used for this run only, and the returned note says so.
"""

from __future__ import annotations

import socket

from .settings import AppSettings

HOST = "127.0.0.1"


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a listener could bind `host:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """A port the system considers free now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_local_port(settings: AppSettings, requested: int | None = None) -> tuple[int, str | None]:
    """(port to listen on, a note for the operator or None)."""
    if requested:
        settings.set_local_port(requested)
        return requested, None
    stored = settings.local_port()
    if stored is None:
        port = free_port()
        settings.set_local_port(port)
        return port, None
    if port_is_free(stored):
        return stored, None
    port = free_port()
    return port, (
        f"The local service's port {stored} is in use by another program: using {port} for this run "
        f"(set one with: slotdeck gui --port N)."
    )
