"""How the dashboard writes times and durations, the same in every table."""

from __future__ import annotations

import datetime as dt


def format_duration(seconds: float | None) -> str:
    """Short human duration ("4.2s", "3m 05s", "2h 10m", "3d 4h"); "" for unknown."""
    if seconds is None:
        return ""
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 60:
        return f"{sign}{s:.1f}s"
    whole = int(s)
    if whole < 3600:
        return f"{sign}{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{sign}{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{sign}{whole // 86400}d {whole % 86400 // 3600}h"


def format_when(at: float | None) -> str:
    """A wall time as local "YYYY-MM-DD HH:MM:SS"; "" for unknown."""
    return "" if at is None else dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def format_wait(seconds: float | None) -> str:
    """An estimated wait, coarse on purpose: it is shown, not promised; "—" when there is no estimate."""
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
