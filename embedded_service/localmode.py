"""Where a local service leaves its address and token for local tools.

The desktop's embedded server and `slotdeck serve` on loopback write
`local.json` (mode 0600) so that the CLI and scripts of the same user find the
service without copying a token around.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from pathlib import Path

import psutil

from .private import private_dir

log = logging.getLogger("slotdeck.localmode")

LOCAL_FILE = "local.json"


def data_dir() -> Path:
    """The user's SlotDeck data directory.

    `$SLOTDECK_HOME`, else `$XDG_DATA_HOME/slotdeck`, else `~/.local/share/slotdeck`.
    """
    home = os.environ.get("SLOTDECK_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "slotdeck"


def local_endpoint_path() -> Path:
    return data_dir() / LOCAL_FILE


def write_local_endpoint(url: str | None, token: str) -> Path:
    """Write the local service's URL and token, readable by this user only; returns the file's path.
    `url` None: the service stopped; the token stays for its next start (see `stored_local_token`)."""
    path = local_endpoint_path()
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # never write through what is there (a planted symlink): a new file or nothing
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"url": url, "token": token, "pid": os.getpid() if url is not None else None}, fh)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:  # a full disk: no half-written file left behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_local_endpoint() -> tuple[str, str] | None:
    """The (url, token) a local service left, or None when there is none, it is unreadable, or its process is gone.

    A file left by a service that no longer runs (killed) is ignored: whoever listens on its port now must
    not be sent the token.
    """
    path = local_endpoint_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pid = data.get("pid")
        if data.get("url") is None:  # its service stopped cleanly: no URL to send the token to
            return None
        if isinstance(pid, int) and not psutil.pid_exists(pid):
            log.info("ignoring %s: the service that wrote it (pid %d) no longer runs", path, pid)
            return None
        return str(data["url"]), str(data["token"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable local endpoint file %s: %s", path, exc)
        return None


def other_local_service() -> tuple[int, str] | None:
    """(pid, url) when `local.json` names a service of another process that still runs, else None.

    Only the first running service of a data directory writes the file: a second one on another store (say
    `--store memory://`) must not send the CLI, the dashboard and scripts to itself, nor take the first one's token
    out of the file. A writer killed but not yet reaped (a zombie), or a pid that a newer process got after the
    writer died (it started after the file was written), does not count.
    """
    path = local_endpoint_path()
    try:
        written_at = path.stat().st_mtime
        data = json.loads(path.read_text(encoding="utf-8"))
        pid, url = data.get("pid"), data.get("url")
        if not isinstance(pid, int) or not isinstance(url, str) or pid == os.getpid():
            return None
        writer = psutil.Process(pid)
        with writer.oneshot():
            started_at, status = writer.create_time(), writer.status()
    except (OSError, ValueError, AttributeError, psutil.Error):
        return None
    if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):  # killed, not yet reaped by its parent
        return None
    return (pid, url) if started_at <= written_at + 1.0 else None


def stored_local_token() -> str | None:
    """The token `local.json` holds, whether or not its service runs: the next owner of the data directory
    reuses it (when its store still knows it), so scripts that read the file keep working across restarts."""
    try:
        token = json.loads(local_endpoint_path().read_text(encoding="utf-8")).get("token")
    except (OSError, ValueError, AttributeError):
        return None
    return token if isinstance(token, str) else None


def forget_local_endpoint(url: str | None = None) -> None:
    """A service stopping: when this process wrote `local.json` (for `url`, where given), take its URL out so
    nobody sends the token to whoever takes the port next; the token stays for the next start."""
    path = local_endpoint_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("pid") == os.getpid() and url in (None, data.get("url")):
            write_local_endpoint(None, str(data["token"]))
    except (OSError, ValueError, AttributeError, KeyError) as exc:
        log.debug("local endpoint file %s not updated: %s", path, exc)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
