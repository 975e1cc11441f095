"""Run the real dashboard (desktop.app.build, as `slotdeck gui` does) against a server and save screenshots.

Usage: python grab_app.py URL OUT_DIR [SETTLE_S [app options, e.g. --theme dark]]  (token in SLOTDECK_TOKEN;
URL "local": the app's own local service, as a first start opens it).
Used by test_xvfb.py under Xvfb: waits until the connection is live and a few seconds of graphs are drawn,
grabs the main window (widget render) and the X screen (what a person would see), then closes the window as a user would.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from desktop.app import build
from desktop.views.overview import COLUMNS

SETTLE_S = 6.0


async def scenario(window, out: Path, settle_s: float) -> None:  # type: ignore[no-untyped-def]
    running = asyncio.ensure_future(window.run())
    page = await window.first_page_with_data()
    await asyncio.sleep(settle_s)
    window.grab().save(str(out / "window.png"))
    screen = window.screen().grabWindow(0)
    screen.save(str(out / "screen.png"))
    for tab in (1, 2, 3, 4):
        page.show_tab(tab)
        await asyncio.sleep(0.5)
        window.grab().save(str(out / f"tab{tab}.png"))
    page.show_tab(0)
    widths = [page.overview.plot_widget(key).width() for key in page.overview.plot_keys()[:COLUMNS]]
    print(f"state={page.conn.state.value} queues={len(page.conn.last_snapshot.queues)} widths={widths}", flush=True)
    window.close()
    await running


def main() -> int:
    url, out = sys.argv[1], Path(sys.argv[2])
    settle_s = float(sys.argv[3]) if len(sys.argv) > 3 else SETTLE_S
    out.mkdir(parents=True, exist_ok=True)
    remote = [] if url == "local" else ["--no-local", "--connect", url]
    _, loop, window = build([*remote, *sys.argv[4:]])
    if remote:
        window.resize(1600, 1000)  # local: the size a first start opens at
    with loop:
        loop.run_until_complete(scenario(window, out, settle_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
