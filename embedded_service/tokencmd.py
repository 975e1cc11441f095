"""`slotdeck token create | list | delete`: through the service that owns the store, or on the store itself.

Where a service runs (named by `--url`/`SLOTDECK_URL`, or the local one that
`local.json` names and that answers `/v1/health`), a token command goes through
its API: the service caches tokens, audits the change and decides who may make
it. The store is changed directly only when no service runs; then the options
that only a server uses (`--token`, `--ca`) are refused rather than ignored,
and `--store`/`--data-dir` are refused with `--url`.

Both ways a name that exists is replaced only with `--replace`, the token
making the request only with `--confirm-self`, and the change is audited.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from .localmode import read_local_endpoint
from .model import AuditEntry
from .stores import Store


class TokenUsageError(Exception):
    """Options that do not fit together, said in one line."""


def running_local_service(timeout_s: float = 2.0) -> tuple[str, str] | None:
    """The (url, token) of the local service when one answers its health check; None when none runs."""
    local = read_local_endpoint()
    if local is None:
        return None
    try:
        answer = httpx.get(local[0].rstrip("/") + "/v1/health", timeout=timeout_s, verify=False)
    except httpx.HTTPError:
        return None
    return local if answer.status_code == 200 else None


def choose_service(args: argparse.Namespace) -> tuple[str, str | None] | None:
    """(url, token) of the service to go through, or None for the store itself; TokenUsageError for a misfit."""
    url = args.url or os.environ.get("SLOTDECK_URL")
    token = args.token or os.environ.get("SLOTDECK_TOKEN")
    store_options = [flag for flag, value in (("--store", args.store), ("--data-dir", args.data_dir)) if value]
    if url:
        if store_options:
            raise TokenUsageError(
                f"{' and '.join(store_options)} name a local store; with --url the token is changed through that server"
            )
        local = read_local_endpoint()
        if token is None and local is not None and local[0].rstrip("/") == url.rstrip("/"):
            token = local[1]
        return url, token
    if not store_options:
        local = running_local_service()
        if local is not None:
            return local[0], token or local[1]
    unused = [flag for flag, value in (("--token", args.token), ("--ca", args.ca)) if value]
    if unused:
        raise TokenUsageError(
            f"{' and '.join(unused)} would not be used: no server runs here (or --store names the store); "
            "pass --url to change tokens through a server"
        )
    return None


async def _audit(store: Store, action: str, name: str, before: Any, after: Any) -> None:
    actor = f"cli:{getpass.getuser()}"
    await store.add_audit(AuditEntry(at=time.time(), actor=actor, action=action, target=name, before=before, after=after))


async def create_in_store(store: Store, name: str, role: str, replace: bool) -> str | None:
    """The new token, or None when the name exists and `replace` is False."""
    from .api.auth import create_new_token

    before = next((t for t in await store.list_tokens() if t.name == name), None)
    if before is not None and not replace:
        return None
    token = await create_new_token(store, name, role, replace)
    if token is None:  # made meanwhile (another CLI, or a server on the same Redis)
        return None
    action, old = ("token.replace", {"role": before.role.value}) if before else ("token.create", None)
    await _audit(store, action, name, old, {"role": role})
    return token


async def delete_in_store(store: Store, name: str) -> bool:
    deleted = await store.delete_token(name)
    if deleted:
        await _audit(store, "token.delete", name, None, None)
    return deleted


def through_owner(store_url: str) -> tuple[str, str | None] | None:
    """The (url, token) of the running service that owns the store (holds its lock), None when no process owns it.

    The token is `local.json`'s when that file names the owner's URL. A change to an owned store never goes to the
    store itself: an owner that serves no API gives TokenUsageError naming it.
    """
    from .stores.ownership import current_owner, lock_path_for_url

    lock_path = lock_path_for_url(store_url)
    owner = current_owner(lock_path) if lock_path is not None else None
    if owner is None:
        return None
    if owner.url is None:
        raise TokenUsageError(
            f"the store is owned by process {owner.pid}, which serves no API to change tokens through; "
            "stop it first, or pass --url of the server that uses this store"
        )
    local = read_local_endpoint()
    token = local[1] if local is not None and local[0].rstrip("/") == owner.url.rstrip("/") else None
    return owner.url, token


def run(
    args: argparse.Namespace,
    store_url: str,
    with_store: Callable[[Callable[[Store], Any]], Any],
    emit_json: Callable[[Any], None],
    show_table: Callable[[list[list[Any]]], str],
) -> int:
    """Carry out a parsed `token` command; returns the exit code (the CLI's codes)."""
    from .cli import EXIT_CONFLICT, EXIT_NOT_FOUND, EXIT_OK

    service = choose_service(args)
    action = args.token_action
    if service is None and action != "list":
        service = through_owner(store_url)
    if service is not None:
        return _through_api(args, service, emit_json, show_table)
    if action == "create":
        token = with_store(lambda s: create_in_store(s, args.name, args.role, args.replace))
        if token is None:
            print(f"slotdeck: a token named {args.name!r} exists; pass --replace to replace it", file=sys.stderr)
            return EXIT_CONFLICT
        _show_new(args, token, "the local store")
        return EXIT_OK
    if action == "list":
        stored = with_store(lambda s: s.list_tokens())
        _show_list(args, [(t.name, t.role.value, t.created_at) for t in stored], emit_json, show_table)
        return EXIT_OK
    if not with_store(lambda s: delete_in_store(s, args.name)):
        print(f"no token named {args.name!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(f"deleted token {args.name!r}")
    return EXIT_OK


def _through_api(
    args: argparse.Namespace,
    service: tuple[str, str | None],
    emit_json: Callable[[Any], None],
    show_table: Callable[[list[list[Any]]], str],
) -> int:
    from .cli import EXIT_OK
    from .client import Client

    url, token = service
    with Client(url, token, verify=args.ca or True, timeout=args.timeout) as client:
        if args.token_action == "create":
            made = client.create_token(args.name, args.role, replace=args.replace, confirm_self=args.confirm_self)
            _show_new(args, str(made["token"]), url)
        elif args.token_action == "list":
            rows = [(t.name, t.role.value, t.created_at) for t in client.tokens()]
            _show_list(args, rows, emit_json, show_table)
        else:
            client.delete_token(args.name, confirm_self=args.confirm_self)
            print(f"deleted token {args.name!r}")
    return EXIT_OK


def _show_new(args: argparse.Namespace, token: str, where: str) -> None:
    if args.json:
        from .cli import emit_json

        emit_json({"name": args.name, "role": args.role, "token": token})
        return
    print(token)
    print(f"(token {args.name!r}, role {args.role}: shown once, only its hash is kept by {where})", file=sys.stderr)


def _show_list(
    args: argparse.Namespace,
    rows: list[tuple[str, str, float]],
    emit_json: Callable[[Any], None],
    show_table: Callable[[list[list[Any]]], str],
) -> None:
    if args.json:
        emit_json([{"name": name, "role": role, "created_at": at} for name, role, at in rows])
    else:
        print(show_table([[name, role, at] for name, role, at in rows]))
