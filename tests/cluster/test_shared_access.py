"""Redis mode: every server of a deployment shares one token table and one audit trail (`cluster.access`),
so a token made through one server works on all, a deleted one stops on all, and roles hold everywhere."""

from __future__ import annotations

import contextlib
import threading
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


def open_stream(client: httpx.Client, path: str, token: str) -> tuple[threading.Thread, list[str]]:
    """Read `path` as a stream on a thread until it ends (or 30 s pass); the lines it got, then "<end>"."""
    got: list[str] = []

    def read() -> None:
        timeout = httpx.Timeout(30, read=30)
        with client.stream("GET", path, headers=bearer(token), timeout=timeout) as answer:
            got.append(f"<{answer.status_code}>")
            with contextlib.suppress(httpx.ReadTimeout):
                for line in answer.iter_lines():
                    got.append(line)
        got.append("<end>")

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    wait_until(f"{path} to start streaming", lambda: len(got) > 1, 10)
    return thread, got


def test_a_token_deleted_or_replaced_through_one_server_ends_its_streams_on_every_server(two_servers: Servers) -> None:
    (a, a_admin), (b, b_admin) = two_servers
    for name, change in (("watcher", "delete"), ("watcher2", "replace")):
        made = a.post("/v1/tokens", json={"name": name, "role": "viewer"}, headers=bearer(a_admin))
        assert made.status_code in (200, 201), made.text
        viewer = made.json()["token"]
        sse, sse_got = open_stream(b, "/v1/events?types=audit", viewer)  # on b, the other server
        if change == "delete":
            assert a.delete(f"/v1/tokens/{name}", headers=bearer(a_admin)).status_code == 204
        else:
            body = {"name": name, "role": "viewer", "replace": True}
            assert a.post("/v1/tokens", json=body, headers=bearer(a_admin)).status_code in (200, 201)
        wait_until(f"b's stream of the {change}d token to end", lambda g=sse_got: g[-1] == "<end>", 10)  # type: ignore[misc]
        sse.join(5)
        # and it was sent nothing after the change: the audit of a change made after it is not in it
        assert b.patch("/v1/queues/default", json={"limit": 3}, headers=bearer(b_admin)).status_code == 200
        assert not any('"queue.update"' in line for line in sse_got), sse_got


def test_one_name_created_at_once_through_both_servers_is_made_once(two_servers: Servers) -> None:
    """Without `replace`, a name is made by one request only: every other gets 409, none a token that was
    silently replaced before it was ever used."""
    from concurrent.futures import ThreadPoolExecutor

    def create(i: int, name: str) -> httpx.Response:
        client, admin = two_servers[i % 2]
        return client.post("/v1/tokens", json={"name": name, "role": "viewer"}, headers=bearer(admin))

    with ThreadPoolExecutor(max_workers=8) as pool:
        for round_ in range(6):
            name = f"race{round_}"
            answers = list(pool.map(lambda i, n=name: create(i, n), range(8)))  # type: ignore[misc]
            made = [a for a in answers if a.status_code == 201]
            assert len(made) == 1, [(a.status_code, a.text) for a in answers]
            assert all(a.status_code == 409 for a in answers if a not in made), [a.text for a in answers]
            a, _ = two_servers[0]
            assert a.get("/v1/whoami", headers=bearer(made[0].json()["token"])).status_code == 200


def test_a_no_auth_server_does_not_mint_tokens_for_the_whole_deployment(
    two_servers: Servers, ns_url: str, tmp_path: Path
) -> None:
    """`serve --no-auth` lets every local user of its machine in as admin, of that server. On the deployment's
    shared token table it would mint admin tokens good on every auth-on server: it must not change it."""
    (a, a_admin), _ = two_servers
    server = Serve(home_env(tmp_path / "noauth", SLOTDECK_STORE=ns_url), "--no-auth")
    try:
        open_server = httpx.Client(base_url=wait_until("the --no-auth server", lambda: _served_url(server)), timeout=30)
        made = open_server.post("/v1/tokens", json={"name": "sneaky", "role": "admin"})
        assert made.status_code == 403, made.text
        assert open_server.delete("/v1/tokens/x").status_code == 403
        names = {t["name"] for t in a.get("/v1/tokens", headers=bearer(a_admin)).json()}
        assert "sneaky" not in names
        open_server.close()
    finally:
        server.kill()


def _served_url(server: Serve) -> str | None:
    """The URL a `--no-auth` server logs once it serves (it writes no local.json)."""
    assert server.proc.poll() is None, server.output()
    for line in server.output().splitlines():
        if "serving http://" in line:
            return "http://" + line.split("serving http://")[1].split()[0]
    return None
