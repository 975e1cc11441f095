"""Code/config sets a queue's values; an operator's live change wins across restarts until reset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from serving import Server, clean_env

from embedded_service import SlotService


def slotdeck(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", *args, "--url", server.url],
        env=clean_env(server.home),
        capture_output=True,
        text=True,
        timeout=60,
    )


def default_queue(server: Server) -> dict:  # type: ignore[type-arg]
    with server.http() as http:
        return next(q for q in http.get("/v1/queues").json() if q["name"] == "default")


@pytest.mark.timeout(240)
def test_an_operator_limit_survives_restarts_over_the_configured_one_until_reset(tmp_path: Path) -> None:
    server = Server(tmp_path / "home", "--default-limit", "3")  # the configured value, as an app's code gives it
    try:
        server.start()
        with server.http() as http:
            assert http.patch("/v1/queues/default", json={"limit": 5}).status_code == 200
        queue = default_queue(server)
        assert queue["limit"] == 5 and queue["configured"]["limit"] == 3
        assert queue["overrides"]["limit"]["value"] == 5 and queue["overrides"]["limit"]["by"] == "anonymous"
        assert queue["overrides"]["limit"]["at"] > 0 and "paused" not in queue["overrides"]

        server.kill9()
        server.start()  # configuration says 3 again: the operator's 5 wins
        queue = default_queue(server)
        assert (queue["limit"], queue["configured"]["limit"], queue["overrides"]["limit"]["value"]) == (5, 3, 5)
        with server.http() as http:
            assert http.get("/v1/queues/default").json()["overrides"]["limit"]["value"] == 5
        status = slotdeck(server, "status")
        assert status.returncode == 0, status.stderr
        assert "* default.limit = 5 (configured 3) set by anonymous" in status.stdout

        bad = slotdeck(server, "reset-field", "default", "colour")
        assert bad.returncode == 2 and "unknown queue field 'colour'" in bad.stderr and "Traceback" not in bad.stderr
        reset = slotdeck(server, "reset-field", "default", "limit")
        assert reset.returncode == 0, reset.stderr
        assert reset.stdout.strip() == "default: limit 3 (configured values; operator overrides cleared)"
        queue = default_queue(server)
        assert (queue["limit"], queue["overrides"]) == (3, {})
        with server.http() as http:
            actions = [entry["action"] for entry in http.get("/v1/audit").json()]
        assert actions[:2] == ["queue.reset_fields", "queue.update"]

        server.kill9()
        server.start()
        assert (default_queue(server)["limit"], default_queue(server)["overrides"]) == (3, {})
        assert "operator-set" not in slotdeck(server, "status").stdout
    finally:
        server.stop()


async def test_configure_queue_in_code_vs_live_changes_across_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/app.db"
    async with SlotService(store=url) as svc:
        svc.configure_queue("llm", limit=3)
        await svc.update_queue("llm", "alice", limit=5)
    svc = SlotService(store=url)
    svc.configure_queue("llm", limit=3, timeout_s=60)  # the app's start-up code, as in the README
    async with svc:
        config = svc.queue_config("llm")
        assert (config.limit, config.timeout_s) == (5, 60)
        configured, overrides = svc.overrides.view("llm")
        assert configured["limit"] == 3 and overrides["limit"].by == "alice"
        svc.configure_queue("llm", limit=4)  # code changes its value live: the operator's still wins
        assert svc.queue_config("llm").limit == 5
        await svc.update_queue("llm", "bob", limit=4)  # set back to the configured value: no override left
        assert svc.overrides.view("llm")[1] == {}
        await svc.update_queue("llm", "bob", paused=True)
        assert (await svc.reset_fields("llm", ["paused"])).paused is False
        with pytest.raises(ValueError, match="unknown queue field"):
            await svc.reset_fields("llm", ["nope"])
    svc = SlotService(store=url)
    svc.configure_queue("llm", limit=2)
    async with svc:
        assert svc.queue_config("llm").limit == 2  # no override left: code's value applies
