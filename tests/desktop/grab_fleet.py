"""Run the real dashboard against several servers and save a screenshot of every page, as a person sees it.

Usage: python grab_fleet.py OUT_DIR WIDTHxHEIGHT URL[#TOKEN] [URL[#TOKEN]...] [-- app options, e.g. --theme dark]
(a URL without its own token uses SLOTDECK_TOKEN). Opens the window at the given size, submits a few real
jobs (one fails, one runs in a shell), lets graphs fill, then saves `fleet-<tab>.png` for each tab of the
first server, `focus-last.png` with the last server chosen, and `<theme>-overview.png` after a Ctrl+T.
Prints one line of facts (window size, states) for the caller to check.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from desktop.app import build
from desktop.connection import ConnectionSpec
from desktop.page import TABS
from embedded_service.model import CommandSubmit

SETTLE_S = 8.0


async def scenario(window, out: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    running = asyncio.ensure_future(window.run())
    window.resize(*size)
    page = await window.first_page_with_data()
    window.show_server(page.conn.name)  # the page grabbed below is the one shown (not another that had data first)
    first_queue = page.conn.last_snapshot.queues[0]
    page.conn.set_limit(first_queue.config.name, first_queue.config.limit + 1)
    page.conn.pause(page.conn.last_snapshot.queues[-1].config.name)
    page.conn.submit_command(CommandSubmit(argv=["false"], queue=page.conn.last_snapshot.queues[0].config.name))
    page.conn.submit_command(CommandSubmit(argv=["bash", "-lc", "for i in 1 2 3; do echo step $i; sleep 1; done"]))
    await asyncio.sleep(SETTLE_S)
    for index, label in enumerate(TABS):
        page.show_tab(index)
        if label == "Jobs" and page.jobs.model.rowCount():
            page.jobs.table.selectRow(0)
        if label == "Queues" and page.queues.model.rowCount():
            page.queues.table.selectRow(0)
        await asyncio.sleep(1.0)
        name = label.replace("&&", "and").replace(" ", "-").lower()
        window.grab().save(str(out / f"fleet-{name}.png"))
    page.show_tab(0)
    last = list(window.pages)[-1]
    window.show_server(last)
    await asyncio.sleep(1.5)
    window.grab().save(str(out / "focus-last.png"))
    window.toggle_theme()
    await asyncio.sleep(1.5)
    window.grab().save(str(out / f"{window.settings.theme()}-overview.png"))
    window.screen().grabWindow(0).save(str(out / "screen.png"))
    frame = window.frameGeometry()
    states = ",".join(p.conn.state.value for p in window.pages.values())
    print(f"frame={frame.width()}x{frame.height()} screen={window.screen().availableGeometry().width()} states={states}")
    window.close()
    await running


def main() -> int:
    args = sys.argv[1:]
    extra = args[args.index("--") + 1 :] if "--" in args else []
    args = args[: args.index("--")] if "--" in args else args
    out, size_text, urls = Path(args[0]), args[1], args[2:]
    out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in size_text.split("x"))
    _, loop, window = build(["--no-local", *extra])
    for i, item in enumerate(urls):
        url, _, token = item.partition("#")
        name = f"server-{chr(ord('a') + i)}"
        window.add_connection(ConnectionSpec(name, url, remember=False), token or os.environ.get("SLOTDECK_TOKEN"))
    with loop:
        loop.run_until_complete(scenario(window, out, (width, height)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
