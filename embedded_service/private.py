"""Files private to the service's user, whatever the umask.

The store holds job environments (API keys), the local-mode file holds an
admin token and job logs hold whatever jobs print, so none of them is for
other local users: directories SlotDeck makes are 0700, its files 0600.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, *, ours: bool = True) -> Path:
    """Make `path` (and missing parents) a 0700 directory.

    A directory that already exists is narrowed to 0700 only when `ours` (the data directory);
    an existing directory the user chose to put a store in is theirs to set."""
    missing = not path.exists()
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)  # the umask can only take bits away
    if missing or ours:
        with contextlib.suppress(PermissionError):  # not ours to change (another user's shared dir)
            os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty as 0600 if it is missing, and make it 0600 if it exists."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def narrow(path: Path) -> None:
    """Make an existing file 0600 (a missing one is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, FILE_MODE)


def open_private_append(path: Path) -> int:
    """A 0600 file opened for appending (created if missing), positioned at its end; returns the descriptor.
    A symlink in its place is not followed (OSError): what it points at is not ours to append to or chmod."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    os.lseek(fd, 0, os.SEEK_END)  # so that tell() gives the size, as open(path, "ab") would
    return fd
