"""Log lines an operator can `tail -f`: plain `key=value` text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    """One JSON object per line; structured event fields (queue, owner, ids) go in as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "slotdeck", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def escape_control(text: str) -> str:
    """Control characters as visible escapes, so a value (an owner with a newline) cannot forge a log line."""
    return text.translate(_CONTROL)


class TextFormatter(logging.Formatter):
    """`time level logger: message`, the message's control characters escaped (tracebacks stay multi-line)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_control(record.message)
        return super().formatMessage(record)


REQUEST_LOGGERS = ("httpx", "uvicorn.access")


class DemoteToDebug(logging.Filter):
    """Turns a logger's INFO lines into DEBUG ones, shown only when the root logger is at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def demote_request_logs(names: tuple[str, ...] = REQUEST_LOGGERS) -> None:
    """One line per HTTP request (httpx's "HTTP Request: ...", uvicorn's access log) at DEBUG, not INFO.

    Idempotent. Used by the dashboard and by `slotdeck serve` without `--access-log`.
    """
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DemoteToDebug) for f in logger.filters):
            logger.addFilter(DemoteToDebug())


def configure_logging(level: str = "INFO", json_format: bool = False, access_log: bool = False) -> None:
    """Set up the root logger for a server process (libraries never call this).

    Request lines are logged at INFO with `access_log`, else at DEBUG (seen with level DEBUG only)."""
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    if not access_log:
        demote_request_logs()
