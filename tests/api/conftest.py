"""A real server over loopback HTTP (uvicorn in a thread) with one token per role."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest

from embedded_service.api.auth import create_token
from embedded_service.api.commands import CommandPolicy, CommandRule
from embedded_service.api.embedded import EmbeddedServer
from embedded_service.model import Role

# clients of the test server may run the test's Python with any variables and directory (a real server's
# allow-list is empty unless an admin writes one: tests/api/test_security.py checks that default)
TEST_COMMANDS = CommandPolicy((CommandRule(prefix=(sys.executable,), env=("*",), cwd=("*",)),))


class Running:
    """A started server plus a token for every role and an httpx client per role."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server
        self.url = server.url
        self.tokens = {role.value: server.call(create_token(server.service.store, role.value, role)) for role in Role}
        self.tokens["client2"] = server.call(create_token(server.service.store, "client2", Role.client))

    def http(self, who: str | None = None, token: str | None = None) -> httpx.Client:
        token = token or (self.tokens[who] if who else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def run(self, fn, *args):  # type: ignore[no-untyped-def]
        """Run a plain function on the server's loop (engine state lives there)."""

        async def call():  # type: ignore[no-untyped-def]
            return fn(*args)

        return self.server.call(call())


@pytest.fixture
def running(tmp_path) -> Iterator[Running]:  # type: ignore[no-untyped-def]
    server = EmbeddedServer(
        "memory://",
        probes=False,
        write_local=False,
        grace_s=0.5,
        snapshot_hz=20,
        sample_interval_s=0.1,
        commands=TEST_COMMANDS,
    )
    server.start()
    try:
        yield Running(server)
    finally:
        server.stop()
