"""Token commands go through the server that owns the store, refuse what they would ignore, never replace or
revoke by accident, and every change is audited (never the token)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx

from embedded_service.stores.sqlite import SqliteStore
from tests.api.test_cli_and_server import _serve, home, slotdeck  # noqa: F401  (home is a fixture)


def _audit(path: Path) -> list:  # type: ignore[type-arg]
    async def read():  # type: ignore[no-untyped-def]
        store = SqliteStore(f"sqlite:///{path}")
        await store.open()
        try:
            return await store.list_audit(limit=100)
        finally:
            await store.close()

    return asyncio.run(read())


def test_without_a_server_tokens_change_in_the_store_explicitly_and_audited(home: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "t.db"
    store = ["--store", f"sqlite:///{db}"]
    made = slotdeck("token", "create", "--role", "admin", "--name", "boss", *store, env=home)
    assert made.returncode == 0, made.stderr
    again = slotdeck("token", "create", "--role", "viewer", "--name", "boss", *store, env=home)
    assert again.returncode == 6 and "--replace" in again.stderr, "an existing name is not silently replaced"
    replaced = slotdeck("token", "create", "--role", "viewer", "--name", "boss", "--replace", *store, env=home)
    assert replaced.returncode == 0 and replaced.stdout.strip() != made.stdout.strip()
    assert slotdeck("token", "delete", "boss", *store, env=home).returncode == 0
    entries = _audit(db)
    assert [(e.action, e.target, e.after) for e in reversed(entries)] == [
        ("token.create", "boss", {"role": "admin"}),
        ("token.replace", "boss", {"role": "viewer"}),
        ("token.delete", "boss", None),
    ]
    assert all(e.actor.startswith("cli:") for e in entries)
    text = db.read_bytes().decode("latin-1")
    assert made.stdout.strip() not in text and replaced.stdout.strip() not in text
    ignored = slotdeck("token", "list", "--token", "sdk_x", *store, env=home)
    assert ignored.returncode == 2 and "--token" in ignored.stderr and "would not be used" in ignored.stderr


def test_url_means_the_servers_api_never_the_local_store(home: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    remote = slotdeck(
        "token", "create", "--url", "http://127.0.0.1:9", "--token", "T", "--role", "admin", "--name", "x", env=home
    )
    assert remote.returncode == 3, "cannot connect: it did not quietly create the token locally"
    assert not (Path(home["SLOTDECK_HOME"]) / "slotdeck.db").exists()
    mixed = slotdeck("token", "list", "--url", "http://127.0.0.1:9", "--store", f"sqlite:///{tmp_path}/x.db", env=home)
    assert mixed.returncode == 2 and "--store" in mixed.stderr


def test_with_a_server_running_tokens_change_through_its_api(home: dict[str, str]) -> None:  # noqa: F811
    proc, url = _serve(home)
    try:
        made = slotdeck("token", "create", "--role", "operator", "--name", "ops", env=home)
        assert made.returncode == 0, made.stderr
        assert f"kept by {url}" in made.stderr
        ops = made.stdout.strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ops}"}) as http:
            assert http.get("/v1/snapshot").status_code == 200, "the server knows it at once"
        assert slotdeck("token", "create", "--role", "viewer", "--name", "ops", env=home).returncode == 6
        self_delete = slotdeck("token", "delete", "local", env=home)
        assert self_delete.returncode == 6 and "confirm" in self_delete.stderr
        self_replace = slotdeck("token", "create", "--role", "admin", "--name", "local", "--replace", env=home)
        assert self_replace.returncode == 6
        assert slotdeck("token", "delete", "ops", env=home).returncode == 0
        local = json.loads((Path(home["SLOTDECK_HOME"]) / "local.json").read_text())["token"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {local}"}) as http:
            audit = http.get("/v1/audit").json()
        assert [(e["actor"], e["action"], e["target"]) for e in reversed(audit)][-2:] == [
            ("local", "token.create", "ops"),
            ("local", "token.delete", "ops"),
        ]
        assert ops not in json.dumps(audit)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_a_change_to_a_store_a_server_owns_goes_through_that_server(home: dict[str, str]) -> None:  # noqa: F811
    """--store names the store a running server owns: the change goes to the owner, never around it."""
    proc, url = _serve(home)
    try:
        store = ["--store", f"sqlite:///{Path(home['SLOTDECK_HOME']) / 'slotdeck.db'}"]
        local = json.loads((Path(home["SLOTDECK_HOME"]) / "local.json").read_text())["token"]
        replaced = slotdeck("token", "create", "--role", "admin", "--name", "local", "--replace", *store, env=home)
        assert replaced.returncode == 6 and "confirm" in replaced.stderr, "the owner's own token is not replaced"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {local}"}) as http:
            assert http.get("/v1/snapshot").status_code == 200, "local.json's token still works"
        made = slotdeck("token", "create", "--role", "viewer", "--name", "watcher", *store, env=home)
        assert made.returncode == 0 and f"kept by {url}" in made.stderr, made.stderr
        listed = slotdeck("token", "list", *store, env=home)  # reads work beside the owner, on the store itself
        assert listed.returncode == 0 and "watcher" in listed.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
