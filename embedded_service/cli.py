"""`slotdeck`: run the server, operate it, or open the desktop.

    slotdeck                      the desktop app (same as `slotdeck gui`)
    slotdeck serve                the HTTP server (127.0.0.1:8765, SQLite in the data dir)
    slotdeck status [--watch] | jobs | job show | log | submit [--wait] | retry | cancel
    slotdeck queue create|set|show|delete|list | limit | pause | resume | leases | waiters
    slotdeck completion bash|zsh
    slotdeck token create --role operator --name NAME

The server's URL and token come from --url/--token, else SLOTDECK_URL /
SLOTDECK_TOKEN, else the local-mode file a local server wrote.

Exit codes: see EXIT_CODES_HELP (printed by `slotdeck --help`).
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
from urllib.parse import urlsplit

from pydantic import BaseModel

from . import __version__
from . import cli_format as fmt
from .cli_completion import script, words
from .cli_queues import add_queue_parser
from .cli_work import WAIT_HELP, add_work_parsers
from .config import ConfigError, load_settings, parse_device
from .error_table import status_of
from .errors import SlotDeckError, StoreFault, StoreLocked
from .localmode import read_local_endpoint
from .model import JobState, Role
from .private import private_dir
from .stores.faults import classify
from .stores.sqlite import StoreUnavailable
from .stores.sqlite_schema import SchemaTooNew

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4, 5, 6
EXIT_STORE_OWNED, EXIT_STORE_UNUSABLE = 7, 8

EXIT_CODES_HELP = """exit codes:
  0  ok (also when the reader of the output went away, e.g. `slotdeck jobs | head`)
  1  failed
  2  bad usage or settings, including values the server refuses (HTTP 422) and a malformed --url
  3  cannot connect to the server
  4  not authorised: no or wrong token (--token / SLOTDECK_TOKEN), or a role that may not do it
  5  not found (job, queue, lease, waiter, token)
  6  conflict, gone or unavailable: e.g. cancelling a job that had already finished, deleting a busy
     queue without --force, creating a queue that exists, a timed-out or full queue, a server draining
  7  serve: the store is owned by another running service (the message names its pid and URL)
  8  serve, token: the store or data directory cannot be used (read-only, corrupt, disk full, newer schema;
     Redis unreachable or evicting)
  submit --wait / retry --wait: the job's exit code instead (signal N: 128+N; failed task 1;
     past --max-runtime-s 124; cancelled 130)
  130 interrupted (Ctrl-C)

server and token: --url/--token after the command (slotdeck status --url URL), else
SLOTDECK_URL/SLOTDECK_TOKEN, else the local server's file."""


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


def _when(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def show_status(snap: Any) -> str:
    """Queues, GPUs and host in human units (exact figures: --json)."""
    queue_rows = [
        [
            q.config.name,
            f"{q.in_use}/{q.config.limit}",
            q.waiting,
            "paused" if q.config.paused else "",
            q.marks.in_use,
            q.marks.waiting,
            q.totals.granted,
            q.totals.timed_out,
            fmt.duration(q.est_wait_s),
            q.stuck or "",
        ]
        for q in snap.queues
    ]
    headers = ["QUEUE", "IN USE", "WAITING", "STATE", "PEAK USE", "PEAK WAIT", "GRANTED", "TIMED OUT", "EST WAIT", "STUCK"]
    out = [table(headers, queue_rows)]
    if snap.devices:
        out.append(show_devices(snap))
    elif snap.gpu_probe or snap.gpu_selection:
        out.append(f"GPUs: {'; '.join(x for x in (snap.gpu_probe, snap.gpu_selection) if x)}")
    if snap.hosts:
        out.append(show_hosts(snap))
    if snap.host is not None:
        h = snap.host
        load = f"  load {h.load_1m:.2f}" if h.load_1m is not None else ""
        memory = fmt.used_of(h.memory_used_mib, h.memory_total_mib) or "-"
        out.append(f"host: cpu {fmt.pct(h.cpu_pct) or '-'}  memory {memory}{load}")
    return "\n\n".join(out)


def show_hosts(snap: Any) -> str:
    """Redis mode: every host of the deployment, its processes and what its GPUs can still promise."""
    rows = [
        [
            h.host,
            len(h.instances),
            len(h.devices),
            fmt.mib(sum(d.memory_free_mib or 0 for d in h.devices)) if h.devices else None,
            sum(len(d.leases) for d in h.devices),
            "stale" if h.stale else "ok",
            _when(h.last_heartbeat),
        ]
        for h in snap.hosts
    ]
    return table(["HOST", "PROCESSES", "GPUS", "GPU FREE", "GPU LEASES", "STATE", "LAST HEARTBEAT"], rows)


def show_devices(snap: Any) -> str:
    """The GPU table: figures, what admission can still promise (FREE), health, and why a device is not ok."""
    rows = [
        [
            d.index,
            d.name,
            fmt.used_of(d.memory_used_mib, d.memory_total_mib if d.memory_total_mib is not None else d.memory_budget_mib),
            fmt.mib(d.memory_reserved_mib),
            fmt.mib(d.memory_foreign_mib),
            fmt.mib(d.memory_free_mib),
            fmt.pct(d.utilization_pct),
            None if d.temperature_c is None else f"{d.temperature_c:.0f}°C",
            len(d.leases),
            d.health,
        ]
        for d in snap.devices
    ]
    headers = ["GPU", "NAME", "MEMORY", "RESERVED", "OTHERS", "FREE", "UTIL", "TEMP", "LEASES", "HEALTH"]
    lines = [table(headers, rows)]
    lines += [f"GPU {d.index} {d.health}: {d.health_reason}" for d in snap.devices if d.health != "ok" and d.health_reason]
    if snap.gpu_selection:
        lines.append(f"GPU selection: {snap.gpu_selection}")
    return "\n".join(lines)


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
    elif local is not None and token is None and url is not None and local[0].rstrip("/") == url.rstrip("/"):
        token = local[1]
    if url is None:
        raise UsageError("no server: pass --url (or set SLOTDECK_URL), or start one locally with `slotdeck serve`")
    check_url(url)
    args.resolved_url = url
    return Client(url, token, verify=args.ca or True, timeout=args.timeout)


def check_url(url: str) -> None:
    """A server URL must be http(s)://host[:port][/path]; anything else is a usage error."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise UsageError(f"--url {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url {url!r} is not a server URL; give e.g. http://127.0.0.1:8765")


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env takes KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


def cmd_status(args: argparse.Namespace) -> int:
    if args.watch:
        from .cli_watch import watch, with_holders

        if args.json:
            raise UsageError("--watch draws a terminal view; for JSON use `slotdeck status --json` in a loop")
        render = with_holders(show_status, table)
        with _client(args) as c:
            return watch(c.snapshot, render, url=args.resolved_url, interval_s=args.interval, count=args.count)
    from .cli_overrides import show_overrides

    with _client(args) as c:
        snap = c.snapshot()
        overrides = "" if args.json else show_overrides(c.queues())
    emit_json(snap) if args.json else print("\n\n".join(filter(None, [show_status(snap), overrides])))
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
            job = c.submit_task(args.task, args=task_args, gpus=args.gpus, gpu_mem_mib=args.gpu_mem_mib, **common)
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
        if args.wait:
            from .cli_work import finish_waiting

            if not args.json:
                print(job.id, flush=True)
            return finish_waiting(c, job, args.json, emit_json)
    emit_json(job) if args.json else print(job.id)
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.follow:
            for line in c.follow_log(args.job, tail=args.tail):
                print(json.dumps({"job": args.job, "line": line}) if args.json else line, flush=True)
        elif args.json:
            emit_json({"job": args.job, "log": c.job_log(args.job, tail=args.tail)})
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
            before = c.job(args.id)
            result = before if before.state.finished else c.cancel_job(args.id)
            if before.state.finished or (result.state.finished and result.state is not JobState.cancelled):
                state = result.state.value  # finished before, or while we asked
                print(f"slotdeck: job {args.id} had already finished ({state}); nothing to cancel", file=sys.stderr)
                return EXIT_CONFLICT
            if args.wait is not None:
                result = _wait_finished(c, result, args.wait)
    emit_json(result) if args.json else print(f"{args.id}: {getattr(result, 'state', 'cancelled')}")
    state = getattr(result, "state", None)
    if args.wait is not None and isinstance(state, JobState) and not state.finished:
        print(f"slotdeck: {args.id} was still {state} after {args.wait:g}s", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _wait_finished(c: Any, job: Any, wait_s: float) -> Any:
    """Poll a cancelled job until its final state (the server answers `cancelling` while it stops it)."""
    deadline = time.monotonic() + wait_s
    while not job.state.finished and time.monotonic() < deadline:
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        job = c.job(job.id)
    return job


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


def cmd_placement(args: argparse.Namespace) -> int:
    with _client(args) as c:
        config = c.update_queue(args.queue, placement=args.placement)
    emit_json(config) if args.json else print(f"{config.name}: placement {config.placement}")
    return EXIT_OK


def _store(url: str) -> Any:
    from .cluster.url import is_cluster_url
    from .stores import open_store

    try:
        if is_cluster_url(url):  # a redis-mode deployment's tokens and audit (token commands)
            from .cluster.access import shared_access

            return shared_access(url, open_store("memory://"))
        return open_store(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_store_url(url: str) -> None:
    """ConfigError (exit 2) for a store URL `serve` cannot use: redis:// (admission on Redis) or a store's."""
    from .cluster.url import is_cluster_url, parse_cluster_url

    if not is_cluster_url(url):
        _store(url)
        return
    try:
        parsed = parse_cluster_url(url)
        if not parsed.sentinels and urlsplit(url).port == 0:  # .port raises ValueError for a port out of range
            raise ValueError("port 0 is not a Redis port")
        import redis  # noqa: F401  # the redis extra
    except ImportError:
        raise ConfigError("--store redis:// needs the redis extra: pip install 'slotdeck[redis]'") from None
    except ValueError as exc:
        raise ConfigError(f"bad store URL: {exc}") from None
    from .cluster.url import check_host_id, default_host_id

    try:
        check_host_id(default_host_id())
    except ValueError as exc:
        raise ConfigError(f"SLOTDECK_HOST_ID: {exc}") from None


def _check_job_store(settings: Any) -> None:
    """ConfigError (exit 2) for --job-store / --cluster-lease-ttl-s without a redis:// store, or a job store that
    is itself redis:// (any redis-mode URL, redis+sentinel:// too)."""
    from .cluster.url import is_cluster_url

    redis_mode = is_cluster_url(settings.resolved_store())
    if not redis_mode:
        if settings.job_store is not None or settings.cluster_lease_ttl_s is not None:
            raise ConfigError("--job-store and --cluster-lease-ttl-s need --store redis://... (else the store keeps jobs)")
        return
    if settings.job_store is None:
        return
    if is_cluster_url(settings.job_store):
        raise ConfigError("--job-store takes a store this server owns (sqlite:///PATH), not redis://")
    _store(settings.job_store)


async def _with_store(url: str, work: Callable[[Any], Any]) -> Any:
    store = _store(url)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


def _data_dir_ready(settings: Any) -> None:
    """Make the data directory (0700) when the store lives there; StoreUnavailable (one line, exit 8) when it cannot
    be made or used (read-only file system, a file in the way, no permission)."""
    if settings.store is not None:
        return
    where = settings.resolved_data_dir()
    try:
        private_dir(where)
    except OSError as exc:
        cause = classify(exc)
        raise StoreUnavailable(f"cannot use the data directory {where}: {cause + ': ' if cause else ''}{exc}") from None


def _store_url(args: argparse.Namespace) -> str:
    settings = load_settings({"store": args.store, "data_dir": args.data_dir})
    _data_dir_ready(settings)
    return settings.resolved_store()


def cmd_token(args: argparse.Namespace) -> int:
    from .tokencmd import TokenUsageError, run

    def with_store(work: Callable[[Any], Any]) -> Any:
        return asyncio.run(_with_store(_store_url(args), work))

    def show_table(rows: list[list[Any]]) -> str:
        return table(["NAME", "ROLE", "CREATED"], [[name, role, _when(at)] for name, role, at in rows])

    try:
        return run(args, _store_url(args), with_store, emit_json, show_table)
    except TokenUsageError as exc:
        raise UsageError(str(exc)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from .api.logs import configure_logging
    from .api.server import run_serve

    flags = {
        "host": args.host,
        "port": args.port,
        "store": args.store,
        "job_store": args.job_store,
        "cluster_lease_ttl_s": args.cluster_lease_ttl_s,
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
        "gpus": args.gpus,
        "devices": [parse_device(d) for d in args.device] or None,
        "gpu_memory_budget_mib": args.gpu_memory_budget_mib,
        "gpu_stale_after_s": args.gpu_stale_after_s,
        "advertise_url": args.advertise_url,
    }
    settings = load_settings(flags, config_file=args.config)
    if bool(settings.ssl_certfile) != bool(settings.ssl_keyfile):
        raise ConfigError("TLS needs both --ssl-certfile and --ssl-keyfile")
    _data_dir_ready(settings)
    _check_store_url(settings.resolved_store())  # a bad URL is a usage error, not a traceback
    _check_job_store(settings)
    configure_logging(settings.log_level, settings.log_json, access_log=settings.access_log)
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


def _seconds(text: str) -> float:
    """`--timeout`, `cancel --wait`: a finite number of seconds above 0 (argparse makes a refusal exit 2)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < seconds < 1e9:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds above 0")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="server URL (env SLOTDECK_URL; default: the local server)")
    common.add_argument("--token", help="bearer token (env SLOTDECK_TOKEN; default: the local token)")
    common.add_argument("--ca", help="CA certificate file to verify a TLS server with")
    common.add_argument("--timeout", type=_seconds, default=10.0, help="seconds per request (default 10)")
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser = argparse.ArgumentParser(
        prog="slotdeck",
        description="SlotDeck: queues with slots for slow GPU/LLM work.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"slotdeck {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the HTTP server")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; others need tokens)")
    p.add_argument("--port", type=int, help="port (default 8765)")
    p.add_argument(
        "--store",
        help="store URL (default sqlite:///<data dir>/slotdeck.db); redis://host:port/db?namespace=NAME: "
        "share queues with every process on that Redis (jobs with --job-store)",
    )
    p.add_argument(
        "--job-store",
        help="with --store redis://: the store this server owns and runs jobs from, each under a global slot "
        "(sqlite:///PATH; env SLOTDECK_JOB_STORE; default: jobs off)",
    )
    p.add_argument(
        "--cluster-lease-ttl-s",
        type=float,
        help="with --store redis://: seconds after which a killed server's slots come back (default 30)",
    )
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
    p.add_argument("--gpus", help="GPUs to hand out: indices or UUIDs, comma-separated (default: CUDA_VISIBLE_DEVICES)")
    p.add_argument(
        "--device", action="append", default=[], metavar="INDEX[:MEMORY_MIB[:NAME]]", help="declare a GPU (repeatable)"
    )
    p.add_argument("--gpu-memory-budget-mib", type=int, help="memory a GPU of unknown size (unified) may promise")
    p.add_argument("--gpu-stale-after-s", type=float, help="how long last good GPU figures stand in (default 10)")
    p.add_argument(
        "--advertise-url",
        help="redis mode: the API URL shown to the deployment (behind a proxy; default: the bound host:port)",
    )
    p.set_defaults(func=cmd_serve)

    sub.add_parser("gui", help="open the desktop app (slotdeck gui --help for its options)").set_defaults(func=cmd_gui)
    p = sub.add_parser("status", parents=[common], help="queues, GPUs and host now (--watch: keep redrawing)")
    p.add_argument("-w", "--watch", action="store_true", help="redraw in place until Ctrl-C (plain ANSI, fine over SSH)")
    p.add_argument(
        "--interval", type=_seconds, default=2.0, help="seconds between redraws with --watch (0.5..3600, default 2)"
    )
    p.add_argument("--count", type=int, help="with --watch: stop after this many redraws (default: until Ctrl-C)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("submit", parents=[common], help="submit a command (after --) or a registered task")
    p.add_argument("--queue", default="default", help="queue the command runs in (default: default; tasks use their own)")
    p.add_argument("--task", help="a registered task's name instead of a command")
    p.add_argument("--arg", action="append", default=[], help="a task argument as JSON (repeatable)")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the command (repeatable)")
    p.add_argument("--cwd", help="working directory of the command on the server (default: the server's)")
    p.add_argument("--gpus", type=int, default=0, help="GPUs the command needs (default 0)")
    p.add_argument("--gpu-mem-mib", type=int, default=0, help="GPU memory it needs on each of them, in MiB (default 0)")
    p.add_argument("--priority", type=int, default=0, help="lower runs first (default 0)")
    p.add_argument("--max-runtime-s", type=_seconds, help="stop it after this many seconds (default: no limit)")
    p.add_argument("--max-attempts", type=int, default=1, help="runs in all when it fails (default 1: no retry)")
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)
    p.add_argument("argv", nargs=argparse.REMAINDER, help="-- PROGRAM [ARGS...]")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", parents=[common], help="list jobs")
    p.add_argument("--state", choices=[s.value for s in JobState], help="only jobs in this state")
    p.add_argument("--queue", help="only jobs of this queue")
    p.add_argument("--owner", help="only jobs of this owner (a token's name)")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--cursor", help="the next page: the value a previous listing printed after 'more:'")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("log", parents=[common], help="a job's output")
    p.add_argument("job", help="job id")
    p.add_argument("--tail", type=int, default=200, help="lines from the end to start with (default 200)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the job ends")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("cancel", parents=[common], help="cancel a job (or revoke a lease / cancel a waiter)")
    p.add_argument("id", help="job id (or a lease/waiter id with --lease/--waiter: see slotdeck leases / waiters)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--lease", action="store_true", help="the id is a lease: revoke it")
    kind.add_argument("--waiter", action="store_true", help="the id is a waiter: take it out of line")
    p.add_argument(
        "--wait",
        nargs="?",
        type=_seconds,
        const=60.0,
        default=None,
        metavar="SECONDS",
        help="wait for the job's final state (default 60 s, longer than the kill grace) and print it; exit 1 if it "
        "has none by then",
    )
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("limit", parents=[common], help="set a queue's limit")
    p.add_argument("queue", help="queue name")
    p.add_argument("limit", type=int, help="slots: at most this many holders at once (0 admits nobody)")
    p.set_defaults(func=cmd_limit)
    p = sub.add_parser("placement", parents=[common], help="set where a queue's GPU leases go")
    p.add_argument("queue", help="queue name")
    p.add_argument("placement", choices=["spread", "pack"], help="spread: emptiest GPU first; pack: best fit")
    p.set_defaults(func=cmd_placement)
    for name, func in (("pause", cmd_pause), ("resume", cmd_resume)):
        p = sub.add_parser(name, parents=[common], help=f"{name} a queue")
        p.add_argument("queue", help="queue name")
        p.set_defaults(func=func)

    from .cli_overrides import add_reset_field_command

    add_reset_field_command(sub, common, _client, emit_json)

    store = argparse.ArgumentParser(add_help=False, parents=[common])
    store.add_argument("--store", help="store URL (default: the server's default store)")
    store.add_argument("--data-dir", type=Path, help="data directory whose store to use (default: SLOTDECK_HOME)")
    p = sub.add_parser("token", help="manage API tokens (through the running server, else in the store)")
    tokens = p.add_subparsers(dest="token_action", metavar="ACTION", required=True)
    t = tokens.add_parser("create", parents=[store], help="create a token and print it once")
    t.add_argument("--name", required=True, help="the token's name (shown in the audit log as the actor)")
    t.add_argument("--role", required=True, choices=[r.value for r in Role], help="viewer < client < operator < admin")
    t.add_argument("--replace", action="store_true", help="replace the token of that name if there is one")
    t.add_argument("--confirm-self", action="store_true", help="allow replacing the token making the request")
    tokens.add_parser("list", parents=[store], help="names and roles")
    t = tokens.add_parser("delete", parents=[store], help="revoke a token")
    t.add_argument("name", help="the token's name")
    t.add_argument("--confirm-self", action="store_true", help="allow revoking the token making the request")
    p.set_defaults(func=cmd_token)

    add_queue_parser(sub, common, cmd_queue)
    add_work_parsers(sub, common, _with_client)
    p = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    p.add_argument("shell", choices=["bash", "zsh"], help="the shell: source <(slotdeck completion bash)")
    p.set_defaults(func=cmd_completion)
    return parser


def _with_client(handler: Callable[..., int], with_table: bool = False) -> Callable[[argparse.Namespace], int]:
    """A command function that opens the client and calls `handler(args, client, emit_json[, table])`."""

    def run(args: argparse.Namespace) -> int:
        with _client(args) as c:
            return handler(args, c, emit_json, *([table] if with_table else []))

    return run


def cmd_queue(args: argparse.Namespace) -> int:
    from .cli_queues import run_queue

    with _client(args) as c:
        return run_queue(args, c, emit_json, table)


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(script(args.shell, build_parser()))
    return EXIT_OK


# HTTP status of an error (its row in `error_table.ERRORS`, or an `ApiError`'s own) -> exit code
_EXIT_BY_STATUS = {400: EXIT_USAGE, 422: EXIT_USAGE, 401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND}
_EXIT_BY_STATUS |= dict.fromkeys((409, 410, 503), EXIT_CONFLICT)


def exit_code(exc: SlotDeckError) -> int:
    from .client import ApiError, AuthError, ConnectionFailed

    if isinstance(exc, StoreLocked):
        return EXIT_STORE_OWNED
    if isinstance(exc, StoreFault):  # raised here, by `serve`: a store this process cannot use
        return EXIT_STORE_UNUSABLE
    if isinstance(exc, ConnectionFailed):
        return EXIT_CONNECT
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    status = exc.status if isinstance(exc, ApiError) else status_of(exc)
    return _EXIT_BY_STATUS.get(status, EXIT_FAILED) if status is not None else EXIT_FAILED


def options_before_command(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """What to say for `slotdeck --url URL status` (options belong to the command, after it), else None."""
    if not argv or not argv[0].startswith("-") or argv[0] in ("-h", "--help", "--version"):
        return None
    commands = [w for w in words(parser) if not w.startswith("-")]
    command = next((a for a in argv if a in commands), None)
    if command is None:
        return None
    before = " ".join(argv[: argv.index(command)])
    return f"options go after the command: slotdeck {command} {before} ..."


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `slotdeck` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gui"]:
        return run_gui(argv[1:])  # the desktop app parses its own options
    parser = build_parser()
    misplaced = options_before_command(parser, argv)
    if misplaced:
        print(f"slotdeck: {misplaced}", file=sys.stderr)
        return EXIT_USAGE
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
        print(f"slotdeck: {explain(exc)}", file=sys.stderr)
        return exit_code(exc)
    except (StoreUnavailable, SchemaTooNew) as exc:  # a store that cannot be used: one line, not a traceback
        print(f"slotdeck: {exc}", file=sys.stderr)
        return EXIT_STORE_UNUSABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`slotdeck jobs | head`): stop quietly, and keep Python's
        # final flush of stdout from raising again at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def explain(exc: SlotDeckError) -> str:
    """The error's message plus what to do about it where that is clear."""
    from .client import ApiError, AuthError
    from .errors import UnknownQueue

    if isinstance(exc, AuthError) and exc.status == 401:
        return f"{exc} (pass a token with --token or SLOTDECK_TOKEN; create one with `slotdeck token create`)"
    if isinstance(exc, AuthError) and exc.status == 403:
        return f"{exc} (this token's role does not allow it: viewer < client < operator < admin)"
    if isinstance(exc, ApiError) and exc.status == 422 and exc.detail:
        return f"invalid value: {exc.detail.removeprefix('body.')}"
    if isinstance(exc, UnknownQueue):
        return f"{exc} (see `slotdeck queue list`; create one with `slotdeck queue create NAME`)"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
