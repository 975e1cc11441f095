"""An ops check that polls SlotDeck's `GET /queue/status`, the shape existing scripts know.

    check_queue.py --queue reports --warn 5 --crit 20            # one check (cron, Nagios, ...)
    check_queue.py --queue reports --until-drained --timeout 600  # wait for a batch to finish

Server and token: --url/--token, else SLOTDECK_URL / SLOTDECK_TOKEN (a `viewer` token is
enough). Standard library only, as ops scripts often are.

Prints one line, `OK|WARNING|CRITICAL|UNKNOWN <queue>: ...`, and exits with the monitoring
plugin convention: 0 OK, 1 WARNING (queued >= --warn), 2 CRITICAL (queued >= --crit, or still
busy at the --until-drained timeout), 3 UNKNOWN (server unreachable, bad token, unknown queue).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


class Unknown(Exception):
    """The status could not be read."""


def read_status(url: str, token: str | None, queue: str, timeout: float = 10.0) -> dict[str, Any]:
    """`GET /queue/status?queue=...` as a dict; raises Unknown with a one-line reason."""
    request = urllib.request.Request(f"{url.rstrip('/')}/queue/status?{urllib.parse.urlencode({'queue': queue})}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as exc:
        detail = ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.load(exc).get("detail") or ""
        raise Unknown(f"HTTP {exc.code} {detail}".strip()) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Unknown(f"cannot read {url}: {getattr(exc, 'reason', exc)}") from None


def describe(queue: str, s: dict[str, Any]) -> str:
    wait = s.get("estimated_wait_time")
    est = f", est. wait {wait:.0f}s" if isinstance(wait, int | float) else ""
    return (
        f"{queue}: {s['processing']}/{s['max_processing']} processing, {s['queue_size']} queued{est}; "
        f"{s['total_processed']} done, {s['total_failed']} failed"
        f" | queued={s['queue_size']} processing={s['processing']} failed={s['total_failed']}"
    )


def grade(s: dict[str, Any], warn: int, crit: int) -> int:
    queued = int(s["queue_size"])
    return CRITICAL if queued >= crit else WARNING if queued >= warn else OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("SLOTDECK_URL", "http://127.0.0.1:8765"), help="server URL")
    parser.add_argument("--token", default=os.environ.get("SLOTDECK_TOKEN"), help="bearer token (viewer or above)")
    parser.add_argument("--queue", default="default", help="queue to check (default: default)")
    parser.add_argument("--warn", type=int, default=10, help="WARNING from this many queued (default 10)")
    parser.add_argument("--crit", type=int, default=50, help="CRITICAL from this many queued (default 50)")
    parser.add_argument("--until-drained", action="store_true", help="poll until nothing is queued or processing")
    parser.add_argument("--timeout", type=float, default=600, help="with --until-drained: give up after this (s)")
    parser.add_argument("--every", type=float, default=1.0, help="with --until-drained: seconds between polls")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    try:
        status = read_status(args.url, args.token, args.queue)
        while args.until_drained and (status["queue_size"] or status["processing"]):
            if time.monotonic() >= deadline:
                print(f"CRITICAL {describe(args.queue, status)} (not drained after {args.timeout:g}s)")
                return CRITICAL
            time.sleep(args.every)
            status = read_status(args.url, args.token, args.queue)
    except Unknown as exc:
        print(f"UNKNOWN {args.queue}: {exc}")
        return UNKNOWN
    code = OK if args.until_drained else grade(status, args.warn, args.crit)
    print(f"{NAMES[code]} {describe(args.queue, status)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
