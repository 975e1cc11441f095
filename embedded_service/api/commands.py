"""Who may submit which command jobs.

Submitting a command is code execution as the service's user, so it is a
permission of its own: operators and admins may submit any command; a
`client` may submit registered tasks, and only the commands an admin put on
the allow-list (a TOML file, `command_allowlist` in the server settings):

```toml
[[allow]]                               # argv starts with exactly these; any arguments may follow
prefix = ["python3", "/opt/tools/render.py"]

[[allow]]                               # one glob per argument (fnmatch: * ? [..]); a final "**" takes any rest
pattern = ["/usr/bin/ffmpeg", "-i", "/data/in/*.mp4", "**"]
tokens = ["alice", "render-bot"]        # optional: only these token names (default: every client)
env = ["OMP_NUM_THREADS", "HF_*"]       # optional: variable names (globs) the job may set (default: none)
cwd = ["/data/work/*"]                  # optional: directories (globs) it may run in (default: the service's)
```

A rule matches when its argv test passes and every variable and the working
directory the job asks for are allowed by it: a command that may run with any
`PATH`, `LD_PRELOAD` or `PYTHONPATH` of the caller's choosing runs anything.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ..model import CommandSubmit, Role
from .auth import Principal
from .problems import ApiProblem

REST = "**"


def _climbs(value: str) -> bool:
    """Whether a path-like string has a `..` component (`a/../b`, `..`, `x/..`)."""
    return ".." in value.replace("\\", "/").split("/")


def _glob_matches(value: str, glob: str) -> bool:
    """fnmatch, except that a glob cannot be climbed out of: `/data/in/*` does not match `/data/in/../../etc/x`.

    (`*` matches `/` in fnmatch; a value with a `..` component matches only a glob that has one itself.)
    """
    return fnmatchcase(value, glob) and (not _climbs(value) or _climbs(glob))


def _cwd_allowed(cwd: str, globs: tuple[str, ...]) -> bool:
    """The directory as given and as it resolves now (symlinks followed) must both match a glob."""
    return any(_glob_matches(cwd, g) for g in globs) and any(_glob_matches(os.path.realpath(cwd), g) for g in globs)


class AllowListError(ValueError):
    """An allow-list file that cannot be used, said in one line."""


@dataclass(frozen=True)
class CommandRule:
    """One allow-list entry; exactly one of `prefix` and `pattern` is set."""

    prefix: tuple[str, ...] = ()
    pattern: tuple[str, ...] = ()
    tokens: frozenset[str] | None = None
    env: tuple[str, ...] = ()
    cwd: tuple[str, ...] = ()

    def _argv_matches(self, argv: list[str]) -> bool:
        if self.prefix:
            return tuple(argv[: len(self.prefix)]) == self.prefix
        pattern = list(self.pattern)
        if pattern[-1] == REST:
            pattern.pop()
            if len(argv) < len(pattern):
                return False
            argv = argv[: len(pattern)]
        return len(argv) == len(pattern) and all(_glob_matches(a, p) for a, p in zip(argv, pattern, strict=True))

    def allows(self, who: Principal, body: CommandSubmit) -> bool:
        if self.tokens is not None and who.name not in self.tokens:
            return False
        if not self._argv_matches(body.argv):
            return False
        if any(not any(fnmatchcase(name, glob) for glob in self.env) for name in body.env):
            return False
        return body.cwd is None or _cwd_allowed(body.cwd, self.cwd)


@dataclass(frozen=True)
class CommandPolicy:
    """The allow-list (empty: clients may submit no commands)."""

    rules: tuple[CommandRule, ...] = field(default=())

    def check(self, who: Principal, body: CommandSubmit) -> None:
        """Raise 403 unless `who` may submit this command."""
        if who.allows(Role.operator) or any(rule.allows(who, body) for rule in self.rules):
            return
        raise ApiProblem(
            403,
            "Not allowed",
            f"token {who.name!r} has role {who.role.value}: it may submit registered tasks, and commands only "
            "where the server's command allow-list has them; any other command needs operator",
            code="forbidden",
        )


def _strings(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AllowListError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def parse_rules(data: dict[str, Any], source: str = "allow-list") -> CommandPolicy:
    """A policy from the TOML document's data (`[[allow]]` tables); AllowListError says what is wrong."""
    unknown = set(data) - {"allow"}
    if unknown:
        raise AllowListError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; expected [[allow]] tables")
    entries = data.get("allow", [])
    if not isinstance(entries, list):
        raise AllowListError(f"{source}: allow must be an array of tables ([[allow]])")
    rules = []
    for n, entry in enumerate(entries, 1):
        where = f"{source}: allow #{n}"
        if not isinstance(entry, dict):
            raise AllowListError(f"{where} must be a table")
        extra = set(entry) - {"prefix", "pattern", "tokens", "env", "cwd"}
        if extra:
            raise AllowListError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        if ("prefix" in entry) == ("pattern" in entry):
            raise AllowListError(f"{where} needs exactly one of prefix and pattern")
        prefix = _strings(where, "prefix", entry["prefix"]) if "prefix" in entry else ()
        pattern = _strings(where, "pattern", entry["pattern"]) if "pattern" in entry else ()
        if not (prefix or pattern) or not (prefix or pattern)[0].strip():
            raise AllowListError(f"{where}: the first element must name a program")
        if pattern and REST in pattern[:-1]:
            raise AllowListError(f'{where}: "**" may only be the last element of a pattern')
        tokens = frozenset(_strings(where, "tokens", entry["tokens"])) if "tokens" in entry else None
        env = _strings(where, "env", entry.get("env", []))
        cwd = _strings(where, "cwd", entry.get("cwd", []))
        rules.append(CommandRule(prefix=prefix, pattern=pattern, tokens=tokens, env=env, cwd=cwd))
    return CommandPolicy(tuple(rules))


def load_allowlist(path: Path | None) -> CommandPolicy:
    """Read an allow-list file; None gives the empty policy."""
    if path is None:
        return CommandPolicy()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AllowListError(f"cannot read command allow-list {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AllowListError(f"command allow-list {path}: {exc}") from None
    return parse_rules(data, str(path))
