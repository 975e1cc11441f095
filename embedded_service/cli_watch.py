"""`slotdeck status --watch`: a view that redraws in place, for a GPU box over SSH.

Plain ANSI (cursor home, clear to end of line/screen), no curses: it works in any
terminal and over slow links. Lines are cut to the terminal's width so a redraw
never scrolls. When stdout is not a terminal each frame is printed after a blank
line instead. A failed read shows the error in the frame and the watch goes on;
Ctrl-C ends it with exit 0.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from .client.errors import AuthError
from .errors import SlotDeckError

MIN_INTERVAL_S = 0.5
MAX_INTERVAL_S = 3600.0

HOME, CLEAR_LINE, CLEAR_DOWN = "\x1b[H", "\x1b[K", "\x1b[J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


HOLDERS_SHOWN = 10


def with_holders(render: Callable[[Any], str], table: Callable[..., str]) -> Callable[[Any], str]:
    """`render` plus the longest-held leases (who holds the slots and GPUs), at most HOLDERS_SHOWN."""
    from .cli_work import show_leases

    def both(snap: Any) -> str:
        text = render(snap)
        if not snap.leases:
            return text
        oldest = sorted(snap.leases, key=lambda lease: lease.granted_at)[:HOLDERS_SHOWN]
        more = len(snap.leases) - len(oldest)
        holders = show_leases(snap.model_copy(update={"leases": oldest}), None, table)
        return f"{text}\n\n{holders}" + (f"\n... and {more} more (slotdeck leases)" if more > 0 else "")

    return both


def frame(header: str, body: str, width: int | None) -> list[str]:
    lines = [header, "", *body.splitlines()]
    return [line[:width] for line in lines] if width else lines


def watch(
    read: Callable[[], Any],
    render: Callable[[Any], str],
    *,
    url: str,
    interval_s: float,
    count: int | None = None,
    out: TextIO | None = None,
    ansi: bool | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Redraw `render(read())` every `interval_s` (clamped to 0.5 s..1 h); `count` frames, or until Ctrl-C.

    Returns 0, or the caller's exit code for an authorisation error (raised, since
    retrying cannot fix a wrong token).
    """
    out = out or sys.stdout
    ansi = out.isatty() if ansi is None else ansi
    interval_s = min(max(interval_s, MIN_INTERVAL_S), MAX_INTERVAL_S)
    shown = 0
    if ansi:
        out.write(HIDE_CURSOR + HOME + CLEAR_DOWN)
    try:
        while count is None or shown < count:
            try:
                body = render(read())
            except AuthError:
                raise
            except SlotDeckError as exc:
                body = f"cannot read the status: {exc}\n(retrying every {interval_s:g}s)"
            stamp = time.strftime("%H:%M:%S")
            header = f"slotdeck status  {url}  {stamp}  every {interval_s:g}s, Ctrl-C quits"
            width = shutil.get_terminal_size((120, 40)).columns if ansi else None
            lines = frame(header, body, width)
            if ansi:
                out.write(HOME + "".join(line + CLEAR_LINE + "\n" for line in lines) + CLEAR_DOWN)
            else:
                out.write(("\n" if shown else "") + "\n".join(lines) + "\n")
            out.flush()
            shown += 1
            if count is None or shown < count:
                sleep(interval_s)
    except KeyboardInterrupt:
        pass
    finally:
        if ansi:
            out.write(SHOW_CURSOR)
            out.flush()
    return 0
