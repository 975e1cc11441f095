"""One log line per HTTP request only when asked: `--access-log` (INFO) or `--log-level DEBUG`;
the dashboard's httpx requests likewise at DEBUG."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from embedded_service.api.embedded import EmbeddedServer
from embedded_service.api.logs import REQUEST_LOGGERS, DemoteToDebug, demote_request_logs
from tests.api.test_cli_and_server import _serve, slotdeck


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTDECK_", "MAX_CONCURRENT"))}
    env["SLOTDECK_HOME"] = str(tmp_path / "home")
    return env


def _serve_log(env: dict[str, str], *flags: str) -> str:
    proc, _ = _serve(env, *flags)
    try:
        assert slotdeck("status", env=env).returncode == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    return out


def test_serve_logs_requests_only_with_access_log_or_debug(home: dict[str, str]) -> None:
    quiet = _serve_log(home)
    assert "serving http://" in quiet and "/v1/snapshot" not in quiet
    debug = _serve_log(home, "--log-level", "DEBUG")
    assert any("DEBUG uvicorn.access" in line and "/v1/snapshot" in line for line in debug.splitlines()), debug
    loud = _serve_log(home, "--access-log")
    assert any("INFO uvicorn.access" in line and "/v1/snapshot" in line for line in loud.splitlines()), loud


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


@pytest.fixture
def root_capture() -> Iterator[Records]:
    root = logging.getLogger()
    handler, level = Records(), root.level
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name in REQUEST_LOGGERS:
            logger = logging.getLogger(name)
            for f in [f for f in logger.filters if isinstance(f, DemoteToDebug)]:
                logger.removeFilter(f)


def test_dashboard_http_requests_are_debug_lines(root_capture: Records) -> None:
    with EmbeddedServer("memory://", probes=False, write_local=False, grace_s=0) as server:
        logging.getLogger().setLevel(logging.INFO)  # as the dashboard's basicConfig
        for name in ("httpx", "uvicorn.access"):  # as a fresh process has them (an earlier test may have demoted)
            for f in [f for f in logging.getLogger(name).filters if isinstance(f, DemoteToDebug)]:
                logging.getLogger(name).removeFilter(f)
        httpx.get(f"{server.url}/v1/health", timeout=10)
        assert any("HTTP Request" in m for _, m in root_capture.lines)  # httpx's own INFO line, before
        root_capture.lines.clear()
        demote_request_logs()
        demote_request_logs()  # idempotent
        assert sum(isinstance(f, DemoteToDebug) for f in logging.getLogger("httpx").filters) == 1
        httpx.get(f"{server.url}/v1/health", timeout=10)
        assert not any("HTTP Request" in m for _, m in root_capture.lines)
        logging.getLogger().setLevel(logging.DEBUG)
        httpx.get(f"{server.url}/v1/health", timeout=10)
        assert ("DEBUG", f'HTTP Request: GET {server.url}/v1/health "HTTP/1.1 200 OK"') in root_capture.lines
