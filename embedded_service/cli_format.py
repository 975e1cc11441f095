"""Human units for the CLI's text output: percentages, sizes, durations, ages.

`--json` prints the exact numbers; these helpers are only for people reading a
terminal. Each returns None for an unknown value, which `cli.table` shows as '-'.
"""

from __future__ import annotations

import time


def pct(value: float | None) -> str | None:
    """50.88 -> '51%'."""
    return None if value is None else f"{value:.0f}%"


def mib(value: float | None) -> str | None:
    """Mebibytes as the largest readable unit: 512 -> '512 MiB', 8192 -> '8.0 GiB'."""
    if value is None:
        return None
    if abs(value) >= 1024:
        return f"{value / 1024:.1f} GiB"
    return f"{value:.0f} MiB"


def used_of(used: float | None, total: float | None) -> str | None:
    """'3.1/8.0 GiB' (one unit for both); '?/8.0 GiB' or '3.1 GiB/?' when half is unknown."""
    if used is None and total is None:
        return None
    if used is None:
        return f"?/{mib(total)}"
    if total is None:
        return f"{mib(used)}/?"
    if max(used, total) >= 1024:
        return f"{used / 1024:.1f}/{total / 1024:.1f} GiB"
    return f"{used:.0f}/{total:.0f} MiB"


def duration(seconds: float | None) -> str | None:
    """0.4 -> '0.4s', 75 -> '1m15s', 3725 -> '1h02m', 90000 -> '1d01h'."""
    if seconds is None:
        return None
    if seconds < 0:
        seconds = 0.0
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def when(ts: float | None) -> str | None:
    """A wall time as local 'YYYY-MM-DD HH:MM:SS'."""
    return None if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def ago(ts: float | None, now: float) -> str | None:
    """How long before `now` a wall time was: '3m05s ago'."""
    return None if ts is None else f"{duration(now - ts)} ago"


def within(ts: float | None, now: float) -> str | None:
    """How long after `now` a wall time is: 'in 25s' (or 'overdue')."""
    if ts is None:
        return None
    return "overdue" if ts < now else f"in {duration(ts - now)}"


def gpus(devices: list[int]) -> str | None:
    """GPU indexes: [0, 2] -> '0,2'."""
    return ",".join(str(d) for d in devices) if devices else None
