"""`slotdeck queue create|set|show|delete|list`: every queue field from the command line.

The options are derived from `QueueConfig`'s fields (type, constraints in the help,
description), so a field added to the model is settable here without a CLI change.
Optional fields take `none` to clear them (`--max-waiting none`).
"""

from __future__ import annotations

import argparse
import enum
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic.fields import FieldInfo

from . import cli_format as fmt
from .model import QueueConfig

NONE_WORDS = ("none", "null", "off", "unset")


class Spec(typing.NamedTuple):
    """How one QueueConfig field is read from the command line."""

    name: str
    base: Any  # int, float, str, bool, or a tuple of choices
    optional: bool
    default: Any
    help: str


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), True
    return annotation, False


def _base(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Literal:
        return tuple(str(a) for a in typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tuple(str(m.value) for m in tp)
    if tp in (int, float, bool, str):
        return tp
    return str


def _bounds(info: FieldInfo) -> str:
    words = []
    for meta in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                words.append(f"{sign} {value}")
    return ", ".join(words)


def field_specs() -> list[Spec]:
    """One Spec per settable QueueConfig field (all but `name`), in model order."""
    specs = []
    for name, info in QueueConfig.model_fields.items():
        if name == "name":
            continue
        tp, optional = _unwrap(info.annotation)
        base = _base(tp)
        default = info.get_default(call_default_factory=True)
        text = (info.description or name.replace("_", " ")).rstrip(".")
        bounds = _bounds(info)
        extras = [bounds] if bounds else []
        if isinstance(base, tuple):
            extras.append("one of " + ", ".join(base))
        if optional:
            extras.append("'none' clears it")
        extras.append(f"default {default if default is not None else 'none'}")
        specs.append(Spec(name, base, optional, default, f"{text} ({'; '.join(extras)})"))
    return specs


def _converter(spec: Spec) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        if spec.optional and text.strip().lower() in NONE_WORDS:
            return None
        if isinstance(spec.base, tuple):
            if text not in spec.base:
                raise argparse.ArgumentTypeError(f"choose from {', '.join(spec.base)}")
            return text
        try:
            return spec.base(text)
        except ValueError:
            kind = {int: "a whole number", float: "a number"}.get(spec.base, "a value")
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}" + (" or 'none'" if spec.optional else "")) from None

    convert.__name__ = spec.name  # argparse names the type in its errors
    return convert


def add_field_options(parser: argparse.ArgumentParser) -> None:
    """`--limit N`, `--paused/--no-paused`, `--max-waiting N|none`, ... for every QueueConfig field."""
    group = parser.add_argument_group("queue fields (left out: unchanged by set, the default for create)")
    for spec in field_specs():
        flag = "--" + spec.name.replace("_", "-")
        if spec.base is bool:
            group.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction, default=None, help=spec.help)
        else:
            metavar = "|".join(spec.base) if isinstance(spec.base, tuple) else spec.name.upper()
            group.add_argument(
                flag, dest=spec.name, type=_converter(spec), default=argparse.SUPPRESS, metavar=metavar, help=spec.help
            )


def given_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The queue fields the user passed (None where they said 'none')."""
    fields = {}
    for spec in field_specs():
        if spec.base is bool:
            value = getattr(args, spec.name, None)
            if value is not None:
                fields[spec.name] = value
        elif hasattr(args, spec.name):
            fields[spec.name] = getattr(args, spec.name)
    return fields


# ---------------------------------------------------------------- output


def _value(name: str, value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name.endswith("_s") and isinstance(value, int | float):
        return fmt.duration(float(value)) or "-"
    if name == "rate":
        return f"{value:g}/s"
    return str(value)


def describe(config: Any) -> str:
    """One queue's configuration, one 'field: value' per line."""
    data = config.model_dump() if hasattr(config, "model_dump") else dict(config)
    width = max(len(k) for k in data)
    return "\n".join(f"{k.ljust(width)}  {_value(k, v)}" for k, v in data.items())


def list_table(configs: list[Any], stats: dict[str, Any], table: Callable[..., str]) -> str:
    """Every queue's configuration with its live use."""
    specs = [s for s in field_specs() if s.name not in ("limit",)]
    headers = ["QUEUE", "IN USE", "WAITING", *(s.name.upper().replace("_", " ") for s in specs)]
    rows = []
    for config in configs:
        live = stats.get(config.name)
        use = f"{live.in_use}/{config.limit}" if live is not None else f"?/{config.limit}"
        waiting = live.waiting if live is not None else None
        data = config.model_dump()
        rows.append([config.name, use, waiting, *(_value(s.name, data.get(s.name)) for s in specs)])
    return table(headers, rows)


# -------------------------------------------------------------- commands


def run_queue(args: argparse.Namespace, client: Any, emit_json: Callable[[Any], None], table: Callable[..., str]) -> int:
    """The `queue` subcommands; raises SlotDeckError (mapped to exit codes by the caller)."""
    from .cli import EXIT_CONFLICT, EXIT_OK, UsageError

    action = args.queue_action
    if action == "list":
        configs = client.queues()
        if args.json:
            emit_json(configs)
        else:
            stats = {q.config.name: q for q in client.snapshot().queues}
            print(list_table(configs, stats, table))
        return EXIT_OK
    if action == "show":
        stats = client.queue(args.name)
        if args.json:
            emit_json(stats)
        else:
            print(describe(stats.config))
            print(f"{'in use'.ljust(13)}  {stats.in_use}/{stats.config.limit}, waiting {stats.waiting}")
        return EXIT_OK
    if action == "delete":
        client.delete_queue(args.name, force=args.force)
        if args.json:
            emit_json({"deleted": args.name})
        else:
            print(f"deleted queue {args.name!r}")
        return EXIT_OK
    fields = given_fields(args)
    if action == "create":
        exists = any(c.name == args.name for c in client.queues())
        if exists and not args.replace:
            print(
                f"slotdeck: queue {args.name!r} already exists; change it with `slotdeck queue set`, "
                "or pass --replace to reset every field left out to its default",
                file=sys.stderr,
            )
            return EXIT_CONFLICT
        config = client.configure_queue(args.name, **fields)
    else:
        if not fields:
            raise UsageError("queue set: give at least one field to change, e.g. --limit 4 (see slotdeck queue set -h)")
        config = client.update_queue(args.name, **fields)
    if args.json:
        emit_json(config)
    else:
        print(describe(config))
    return EXIT_OK


def add_queue_parser(sub: Any, common: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
    """Adds `queue` with its subcommands to the top-level subparsers."""
    p = sub.add_parser("queue", help="create, change, show, delete or list queues (every field)")
    actions = p.add_subparsers(dest="queue_action", metavar="ACTION", required=True)
    q = actions.add_parser("list", parents=[common], help="every queue's configuration and live use")
    q = actions.add_parser("show", parents=[common], help="one queue's configuration and live figures")
    q.add_argument("name", help="queue name")
    q = actions.add_parser("create", parents=[common], help="create a queue (fields left out take their defaults)")
    q.add_argument("name", help="queue name (letters, digits, '_', '.', '-'; up to 64)")
    q.add_argument("--replace", action="store_true", help="replace an existing queue's whole configuration")
    add_field_options(q)
    q = actions.add_parser("set", parents=[common], help="change some fields of an existing queue")
    q.add_argument("name", help="queue name")
    add_field_options(q)
    q = actions.add_parser("delete", parents=[common], help="delete a queue")
    q.add_argument("name", help="queue name")
    q.add_argument("--force", action="store_true", help="also cancel its waiters and revoke its leases")
    p.set_defaults(func=func)
