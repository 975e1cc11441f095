"""Redis mode: every server of a deployment shares one token table and one audit trail (`cluster.access`),
so a token made through one server works on all, a deleted one stops on all, and roles hold everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ownership.serving import Serve, cli, home_env, wait_until

Servers = list[tuple[httpx.Client, str]]  # each server's client and its local admin token


@pytest.fixture
def two_servers(ns_url: str, tmp_path: Path, started: list[Serve]) -> Iterator[Servers]:
    for i in range(2):
        started.append(Serve(home_env(tmp_path / f"home{i}", SLOTDECK_STORE=ns_url)).wait_serving())
    clients = [httpx.Client(base_url=server.url, timeout=30) for server in started]
    yield [(client, server.token) for client, server in zip(clients, started, strict=True)]
    for client in clients:
        client.close()
    for server in started:
        assert server.stop() == 0 and "Traceback" not in server.output(), server.output()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_made_on_one_server_works_on_every_server_and_roles_hold(two_servers: Servers) -> None:
    (a, a_admin), (b, b_admin) = two_servers
    # each server's local admin token works everywhere: the second start did not replace the first's
    for client in (a, b):
        for token in (a_admin, b_admin):
            assert client.get("/v1/whoami", headers=bearer(token)).status_code == 200
    made = a.post("/v1/tokens", json={"name": "grafana", "role": "viewer"}, headers=bearer(a_admin))
    assert made.status_code in (200, 201), made.text
    viewer = made.json()["token"]
    assert b.get("/v1/snapshot", headers=bearer(viewer)).status_code == 200  # made on a, known to b
    refused = b.patch("/v1/queues/default", json={"limit": 9}, headers=bearer(viewer))
    assert refused.status_code == 403, refused.text  # and its role holds there
    names = {t["name"] for t in b.get("/v1/tokens", headers=bearer(b_admin)).json()}
    assert "grafana" in names and len([n for n in names if n.startswith("local-")]) == 2
    # one audit trail: a's token change is on b's audit, b's own change too, newest first
    assert b.patch("/v1/queues/default", json={"limit": 4}, headers=bearer(b_admin)).status_code == 200
    audit = b.get("/v1/audit", headers=bearer(b_admin)).json()
    actions = [(entry["action"], entry["target"]) for entry in audit]
    assert ("token.create", "grafana") in actions or ("token.replace", "grafana") in actions, actions
    assert actions.index(("queue.update", "default")) < len(actions) - 1  # newest first
    assert [e["id"] for e in audit] == sorted((e["id"] for e in audit), reverse=True)
    assert a.get("/v1/audit", headers=bearer(a_admin)).json() == audit
    # deleted through b: refused on a too (within the token cache's 2 s)
    assert b.delete("/v1/tokens/grafana", headers=bearer(b_admin)).status_code in (200, 204)
    wait_until("the deleted token refused", lambda: a.get("/v1/snapshot", headers=bearer(viewer)).status_code == 401, 10)


def test_token_commands_on_the_redis_store_reach_every_server(two_servers: Servers, ns_url: str, tmp_path: Path) -> None:
    (a, _), (b, _) = two_servers
    done = cli("token", "create", "--name", "ops", "--role", "operator", "--store", ns_url, env=home_env(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1].split()[-1]
    for client in (a, b):
        who = client.get("/v1/whoami", headers=bearer(token))
        assert who.status_code == 200 and who.json()["role"] == "operator", who.text
