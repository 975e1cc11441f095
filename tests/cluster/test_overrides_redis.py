"""Issue 10's rule in redis mode: an operator's live change wins over code config across restarts, until reset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from ownership.serving import Serve, home_env, wait_until

from embedded_service import SlotService


def serve(home: Path, ns_url: str) -> Serve:
    """A server whose code configuration gives the `default` queue limit 2."""
    return Serve(home_env(home, SLOTDECK_STORE=ns_url), "--default-limit", "2").wait_serving()


def shown(http: httpx.Client) -> tuple[int, Any, Any, int]:
    """(limit, the limit's override mark, its configured value, the limit in the snapshot) of the default queue."""
    queue = http.get("/v1/queues/default").json()
    listed = {q["name"]: q for q in http.get("/v1/queues").json()}["default"]
    assert listed["overrides"] == queue["overrides"] and listed["configured"] == queue["configured"]
    snapshot = {q["config"]["name"]: q for q in http.get("/v1/snapshot").json()["queues"]}["default"]
    override = queue["overrides"].get("limit")
    return (
        queue["config"]["limit"],
        override and (override["value"], override["by"].partition("-")[0]),  # local-<host>-<hex>: a local token
        queue["configured"]["limit"],
        snapshot["config"]["limit"],
    )


def test_an_operators_limit_survives_a_restart_with_code_config_until_reset(
    ns_url: str, tmp_path: Path, started: list[Serve]
) -> None:
    a = serve(tmp_path / "a", ns_url)
    started.append(a)
    b = serve(tmp_path / "b", ns_url)
    started.append(b)
    with a.http() as ha:
        assert ha.patch("/v1/queues/default", json={"limit": 5}).status_code == 200  # the operator, through a
        assert shown(ha) == (5, (5, "local"), 2, 5)
    assert b.stop() == 0
    b = serve(tmp_path / "b", ns_url)  # starts again and publishes its code config (limit 2)
    started.append(b)
    with a.http() as ha, b.http() as hb:
        for http in (ha, hb):  # the operator's change still wins, everywhere, and says so
            wait_until("the view to settle", lambda h=http: shown(h)[0] == 5 or shown(h), 5)
            assert shown(http) == (5, (5, "local"), 2, 5)
        answer = hb.post("/v1/queues/default/reset-fields", json={"fields": ["limit"]})  # reset, through b
        assert answer.status_code == 200, answer.text
        assert (answer.json()["limit"], answer.json()["overrides"]) == (2, {})
        for http in (ha, hb):
            wait_until("the reset to show", lambda h=http: shown(h) == (2, None, 2, 2), 5)
    assert b.stop() == 0 and a.stop() == 0


async def test_an_operators_pause_and_rate_win_over_code_in_every_process_until_reset(ns_url: str) -> None:
    a = SlotService(ns_url)
    a.configure_queue("chat", limit=3, rate=10.0)
    async with a:
        await a.pause("chat")
        await a.update_queue("chat", actor="ops", rate=2.0, limit=3)  # limit 3 is the configured value: no mark
        b = SlotService(ns_url)
        b.configure_queue("chat", limit=3, rate=10.0, paused=False)  # code says: not paused, rate 10
        async with b:
            await a.refresh()
            config = b.queue_config("chat")
            assert (config.paused, config.rate, config.limit) == (True, 2.0, 3)
            assert set(b.overrides.view("chat")[1]) == set(a.overrides.view("chat")[1]) == {"paused", "rate"}
            assert b.overrides.view("chat")[1]["rate"].by == "ops"
            b.configure_queue("chat", limit=4, rate=10.0)  # code again, while running: the limit changes, not the rest
            await b.cluster.published()  # type: ignore[union-attr]
            await b.refresh()
            assert (b.queue_config("chat").limit, b.queue_config("chat").rate) == (4, 2.0)
            reset = await a.reset_fields("chat", ["paused", "rate"])
            assert (reset.paused, reset.rate, reset.limit) == (False, 10.0, 4)
            await b.refresh()
            assert b.overrides.view("chat")[1] == {}
