"""Whether a window can be shown at all, checked before Qt is asked (Qt aborts with exit 134 and a
misleading "install libxcb-cursor0" when there is simply no display, e.g. over SSH)."""

from __future__ import annotations

import os
import sys

NO_DISPLAY_EXIT = 2
HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay", "minimalegl")


def no_display_reason(environ: dict[str, str] | None = None, platform: str = sys.platform) -> str | None:
    """Why no window can be opened here, with what to run instead; None when one can (or cannot be told)."""
    env = os.environ if environ is None else environ
    if not platform.startswith("linux"):
        return None  # Windows and macOS always have their window system
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen.split(":")[0] in HEADLESS_PLATFORMS:
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return (
        "slotdeck: no display to open the dashboard on (DISPLAY and WAYLAND_DISPLAY are unset, e.g. over SSH).\n"
        "  Run the service here instead:   slotdeck serve\n"
        "  and watch it from a machine with a screen:   slotdeck gui --no-local --connect https://HOST:PORT\n"
        "  or use the CLI here:   slotdeck status"
    )
