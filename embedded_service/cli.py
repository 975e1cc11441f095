"""`slotdeck`: run the server, operate it, or open the desktop.

    slotdeck                      the desktop app (same as `slotdeck gui`)
    slotdeck serve                the HTTP server (127.0.0.1:8765, SQLite in the data dir)
    slotdeck status | jobs | log | submit | cancel | limit | pause | resume
    slotdeck token create --role operator --name NAME

The server's URL and token come from --url/--token, else SLOTDECK_URL /
SLOTDECK_TOKEN, else the local-mode file a local server wrote.

Exit codes: 0 ok, 1 failed, 2 bad usage or settings, 3 cannot connect,
4 not authorised, 5 not found, 6 conflict / gone / unavailable (e.g. timed out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import __version__
from .config import ConfigError, load_settings
from .errors import LeaseGone, NoFittingDevice, QueueBusy, QueueFull, SlotCancelled, SlotDeckError, SlotTimeout
from .localmode import read_local_endpoint
from .model import JobState, Role
from .private import private_dir

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4, 5, 6


class UsageError(Exception):
    """Bad command-line input, said in one line."""


# ------------------------------------------------------------------ output


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    print(json.dumps(_plain(value), indent=2, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; None shows as '-'."""
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _secs(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f}s"


def _when(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def show_status(snap: Any) -> str:
    queue_rows = [
        [
            q.config.name,
            f"{q.in_use}/{q.config.limit}",
            q.waiting,
            "paused" if q.config.paused else "",
            f"{q.marks.in_use}/{q.marks.waiting}",
            q.totals.granted,
            q.totals.timed_out,
            _secs(q.est_wait_s),
            q.stuck or "",
        ]
        for q in snap.queues
    ]
    out = [table(["QUEUE", "IN USE", "WAITING", "STATE", "MARKS", "GRANTED", "TIMED OUT", "EST WAIT", "STUCK"], queue_rows)]
    if snap.devices:
        device_rows = [
            [d.index, d.name, d.memory_used_mib, d.memory_total_mib, d.memory_reserved_mib, d.utilization_pct, len(d.leases)]
            for d in snap.devices
        ]
        out.append(table(["GPU", "NAME", "USED MiB", "TOTAL MiB", "RESERVED MiB", "UTIL %", "LEASES"], device_rows))
    elif snap.gpu_probe:
        out.append(f"GPUs: {snap.gpu_probe}")
    if snap.host is not None:
        out.append(f"host: cpu {snap.host.cpu_pct}%  memory {snap.host.memory_used_mib}/{snap.host.memory_total_mib} MiB")
    return "\n\n".join(out)


def show_jobs(page: Any) -> str:
    rows = [
        [j.id, j.state.value, j.queue, j.owner, j.task or " ".join(j.argv or [])[:40], _when(j.created_at), j.exit_code]
        for j in page.jobs
    ]
    text = table(["ID", "STATE", "QUEUE", "OWNER", "WHAT", "CREATED", "EXIT"], rows)
    return text + (f"\nmore: --cursor {page.next_cursor}" if page.next_cursor else "")


# --------------------------------------------------------------- commands


def _client(args: argparse.Namespace) -> Any:
    from .client import Client

    url = args.url or os.environ.get("SLOTDECK_URL")
    token = args.token or os.environ.get("SLOTDECK_TOKEN")
    local = read_local_endpoint()
    if url is None and local is not None:
        url, token = local[0], token or local[1]
    elif local is not None and token is None and local[0].rstrip("/") == url.rstrip("/"):
        token = local[1]
    if url is None:
        raise UsageError("no server: pass --url (or set SLOTDECK_URL), or start one locally with `slotdeck serve`")
    return Client(url, token, verify=args.ca or True, timeout=args.timeout)


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env takes KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        snap = c.snapshot()
    emit_json(snap) if args.json else print(show_status(snap))
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as c:
        page = c.jobs(state=args.state, queue=args.queue, owner=args.owner, limit=args.limit, cursor=args.cursor)
    emit_json(page) if args.json else print(show_jobs(page))
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    common = {"priority": args.priority, "max_runtime_s": args.max_runtime_s, "max_attempts": args.max_attempts}
    with _client(args) as c:
        if args.task:
            if args.argv:
                raise UsageError("give either --task NAME or a command after --, not both")
            try:
                task_args = [json.loads(a) for a in args.arg]
            except json.JSONDecodeError as exc:
                raise UsageError(f"--arg takes JSON values: {exc}") from None
            job = c.submit_task(args.task, args=task_args, **common)
        else:
            argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not argv:
                raise UsageError("nothing to run: slotdeck submit [options] -- PROGRAM [ARGS...]")
            job = c.submit_command(
                argv,
                queue=args.queue,
                env=_parse_env(args.env),
                cwd=args.cwd,
                gpus=args.gpus,
                gpu_mem_mib=args.gpu_mem_mib,
                **common,
            )
    emit_json(job) if args.json else print(job.id)
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.follow:
            for line in c.follow_log(args.job, tail=args.tail):
                print(line, flush=True)
        else:
            sys.stdout.write(c.job_log(args.job, tail=args.tail))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.lease:
            result: Any = c.revoke(args.id)
        elif args.waiter:
            result = c.cancel_waiter(args.id)
        else:
            result = c.cancel_job(args.id)
    emit_json(result) if args.json else print(f"{args.id}: {getattr(result, 'state', 'cancelled')}")
    return EXIT_OK


def _queue_command(action: Callable[[Any, argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with _client(args) as c:
            config = action(c, args)
        emit_json(config) if args.json else print(
            f"{config.name}: limit {config.limit}, {'paused' if config.paused else 'admitting'}"
        )
        return EXIT_OK

    return run


cmd_limit = _queue_command(lambda c, a: c.set_limit(a.queue, a.limit))
cmd_pause = _queue_command(lambda c, a: c.pause(a.queue))
cmd_resume = _queue_command(lambda c, a: c.resume(a.queue))


def _store(url: str) -> Any:
    from .stores import open_store

    try:
        return open_store(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


async def _with_store(url: str, work: Callable[[Any], Any]) -> Any:
    store = _store(url)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


def _store_url(args: argparse.Namespace) -> str:
    settings = load_settings({"store": args.store, "data_dir": args.data_dir})
    if settings.store is None:
        private_dir(settings.resolved_data_dir())
    return settings.resolved_store()


def cmd_token(args: argparse.Namespace) -> int:
    from .tokencmd import TokenUsageError, run

    def with_store(work: Callable[[Any], Any]) -> Any:
        return asyncio.run(_with_store(_store_url(args), work))

    def show_table(rows: list[list[Any]]) -> str:
        return table(["NAME", "ROLE", "CREATED"], [[name, role, _when(at)] for name, role, at in rows])

    try:
        return run(args, with_store, emit_json, show_table)
    except TokenUsageError as exc:
        raise UsageError(str(exc)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from .api.logs import configure_logging
    from .api.server import run_serve

    flags = {
        "host": args.host,
        "port": args.port,
        "store": args.store,
        "data_dir": args.data_dir,
        "default_limit": args.default_limit,
        "log_level": args.log_level,
        "log_json": args.log_json or None,
        "access_log": args.access_log or None,
        "ssl_certfile": args.ssl_certfile,
        "ssl_keyfile": args.ssl_keyfile,
        "grace_s": args.grace_s,
        "snapshot_hz": args.snapshot_hz,
        "auth": False if args.no_auth else None,
        "local_token": False if args.no_local_token else None,
        "probes": False if args.no_probes else None,
        "max_body_bytes": args.max_body_bytes,
        "command_allowlist": args.command_allowlist,
        "job_env_pass": args.job_env_pass,
    }
    settings = load_settings(flags, config_file=args.config)
    if bool(settings.ssl_certfile) != bool(settings.ssl_keyfile):
        raise ConfigError("TLS needs both --ssl-certfile and --ssl-keyfile")
    if settings.store is None:
        private_dir(settings.resolved_data_dir())
    _store(settings.resolved_store())  # a bad URL is a usage error, not a traceback
    configure_logging(settings.log_level, settings.log_json)
    run_serve(settings)
    return EXIT_OK


def cmd_gui(args: argparse.Namespace) -> int:
    return run_gui([])


def run_gui(gui_argv: list[str]) -> int:
    """The desktop app with its own options (`slotdeck gui --help`)."""
    try:
        from desktop.app import main as desktop_main
    except ImportError as exc:
        print(
            f"the desktop app is not installed ({exc.name or exc}); install it with: pip install 'slotdeck[desktop]'",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return desktop_main(gui_argv)


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="server URL (env SLOTDECK_URL; default: the local server)")
    common.add_argument("--token", help="bearer token (env SLOTDECK_TOKEN; default: the local token)")
    common.add_argument("--ca", help="CA certificate file to verify a TLS server with")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser = argparse.ArgumentParser(prog="slotdeck", description="SlotDeck: queues with slots for slow GPU/LLM work.")
    parser.add_argument("--version", action="version", version=f"slotdeck {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the HTTP server")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; others need tokens)")
    p.add_argument("--port", type=int, help="port (default 8765)")
    p.add_argument("--store", help="store URL (default sqlite:///<data dir>/slotdeck.db)")
    p.add_argument("--config", type=Path, help="TOML settings file (env SLOTDECK_CONFIG)")
    p.add_argument("--data-dir", type=Path, help="data directory (env SLOTDECK_HOME)")
    p.add_argument("--default-limit", type=int, help="limit of the default queue (env MAX_CONCURRENT_REQUESTS)")
    p.add_argument("--no-auth", action="store_true", help="no tokens (loopback only; every local user is admin)")
    p.add_argument("--no-local-token", action="store_true", help="do not write the local admin token file")
    p.add_argument("--no-probes", action="store_true", help="do not sample GPUs and host")
    p.add_argument("--log-level", help="DEBUG, INFO (default), WARNING, ...")
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--ssl-certfile", type=Path, help="TLS certificate (PEM)")
    p.add_argument("--ssl-keyfile", type=Path, help="TLS private key (PEM)")
    p.add_argument("--grace-s", type=float, help="seconds running work gets on shutdown (default 30)")
    p.add_argument("--snapshot-hz", type=float, help="snapshot events per second on /v1/events (default 2)")
    p.add_argument("--max-body-bytes", type=int, help="larger request bodies get 413 (default 4194304)")
    p.add_argument("--command-allowlist", type=Path, help="TOML file: the commands client tokens may submit")
    p.add_argument(
        "--job-env-pass", help="service variables command jobs also inherit: NAME,GLOB*,... ('*': all; default: none)"
    )
    p.set_defaults(func=cmd_serve)

    sub.add_parser("gui", help="open the desktop app (slotdeck gui --help for its options)").set_defaults(func=cmd_gui)
    sub.add_parser("status", parents=[common], help="queues, GPUs and host now").set_defaults(func=cmd_status)

    p = sub.add_parser("submit", parents=[common], help="submit a command (after --) or a registered task")
    p.add_argument("--queue", default="default")
    p.add_argument("--task", help="a registered task's name instead of a command")
    p.add_argument("--arg", action="append", default=[], help="a task argument as JSON (repeatable)")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the command (repeatable)")
    p.add_argument("--cwd")
    p.add_argument("--gpus", type=int, default=0)
    p.add_argument("--gpu-mem-mib", type=int, default=0)
    p.add_argument("--priority", type=int, default=0, help="lower runs first")
    p.add_argument("--max-runtime-s", type=float)
    p.add_argument("--max-attempts", type=int, default=1)
    p.add_argument("argv", nargs=argparse.REMAINDER, help="-- PROGRAM [ARGS...]")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", parents=[common], help="list jobs")
    p.add_argument("--state", choices=[s.value for s in JobState])
    p.add_argument("--queue")
    p.add_argument("--owner")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("log", parents=[common], help="a job's output")
    p.add_argument("job")
    p.add_argument("--tail", type=int, default=200)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the job ends")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("cancel", parents=[common], help="cancel a job (or revoke a lease / cancel a waiter)")
    p.add_argument("id")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--lease", action="store_true", help="the id is a lease: revoke it")
    kind.add_argument("--waiter", action="store_true", help="the id is a waiter: take it out of line")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("limit", parents=[common], help="set a queue's limit")
    p.add_argument("queue")
    p.add_argument("limit", type=int)
    p.set_defaults(func=cmd_limit)
    for name, func in (("pause", cmd_pause), ("resume", cmd_resume)):
        p = sub.add_parser(name, parents=[common], help=f"{name} a queue")
        p.add_argument("queue")
        p.set_defaults(func=func)

    store = argparse.ArgumentParser(add_help=False, parents=[common])
    store.add_argument("--store", help="store URL (default: the server's default store)")
    store.add_argument("--data-dir", type=Path)
    p = sub.add_parser("token", help="manage API tokens (through the running server, else in the store)")
    tokens = p.add_subparsers(dest="token_action", metavar="ACTION", required=True)
    t = tokens.add_parser("create", parents=[store], help="create a token and print it once")
    t.add_argument("--name", required=True)
    t.add_argument("--role", required=True, choices=[r.value for r in Role])
    t.add_argument("--replace", action="store_true", help="replace the token of that name if there is one")
    t.add_argument("--confirm-self", action="store_true", help="allow replacing the token making the request")
    tokens.add_parser("list", parents=[store], help="names and roles")
    t = tokens.add_parser("delete", parents=[store], help="revoke a token")
    t.add_argument("name")
    t.add_argument("--confirm-self", action="store_true", help="allow revoking the token making the request")
    p.set_defaults(func=cmd_token)
    return parser


def exit_code(exc: SlotDeckError) -> int:
    from .client import ApiError, AuthError, ConnectionFailed

    if isinstance(exc, ConnectionFailed):
        return EXIT_CONNECT
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    if isinstance(exc, KeyError) or (isinstance(exc, ApiError) and exc.status == 404):
        return EXIT_NOT_FOUND
    if isinstance(exc, SlotTimeout | QueueFull | LeaseGone | SlotCancelled | QueueBusy | NoFittingDevice) or (
        isinstance(exc, ApiError) and exc.status in (409, 410, 503)
    ):
        return EXIT_CONFLICT
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `slotdeck` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gui"]:
        return run_gui(argv[1:])  # the desktop app parses its own options
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.func = cmd_gui
    if args.command != "serve":
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (UsageError, ConfigError) as exc:
        print(f"slotdeck: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SlotDeckError as exc:
        print(f"slotdeck: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
