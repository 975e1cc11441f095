"""CLI: which queue fields an operator set live (`slotdeck status`), and `slotdeck reset-field QUEUE FIELD...`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from .model import QueueView


def show_overrides(views: Sequence[QueueView]) -> str:
    """One `*` line per operator-set field, or "" when there are none."""
    lines = [
        f"* {view.name}.{field} = {override.value!r} (configured {view.configured.get(field)!r}) "
        f"set by {override.by} at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(override.at))}"
        for view in views
        for field, override in sorted(view.overrides.items())
    ]
    if not lines:
        return ""
    return "\n".join(["operator-set fields (they win over code/config; undo: slotdeck reset-field QUEUE FIELD...):", *lines])


def add_reset_field_command(
    sub: Any, common: argparse.ArgumentParser, client: Callable[[argparse.Namespace], Any], emit_json: Callable[[Any], None]
) -> None:
    """Register `slotdeck reset-field QUEUE FIELD...` (operator role)."""

    def run(args: argparse.Namespace) -> int:
        with client(args) as c:
            view = c.reset_fields(args.queue, args.fields)
        if args.json:
            emit_json(view)
        else:
            values = ", ".join(f"{field} {getattr(view, field)!r}" for field in args.fields)
            print(f"{view.name}: {values} (configured values; operator overrides cleared)")
        return 0

    p = sub.add_parser(
        "reset-field", parents=[common], help="give queue fields back to code/config (drop operator overrides)"
    )
    p.add_argument("queue", help="queue name")
    p.add_argument("fields", nargs="+", metavar="FIELD", help="limit, paused, max_waiting, timeout_s, rate, ...")
    p.set_defaults(func=run)
