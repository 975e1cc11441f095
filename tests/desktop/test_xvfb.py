"""The real app in a real X window (Xvfb) against a service under live load; saves screenshots.

Skipped only where Xvfb is not installed (`make test` installs it). The PNGs land in
$SLOTDECK_SCREENSHOTS (default: the test's tmp dir) for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from tests.xdisplay import xvfb_display

HERE = Path(__file__).parent

pytestmark = [pytest.mark.xvfb, pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")]


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb_display() as name:
        yield name


@pytest.fixture
def loaded_service() -> Iterator[tuple[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedded_service.demo", "--queues", "4", "--gpus", "2", "--snapshot-hz", "4"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        endpoint = json.loads(proc.stdout.readline())
        yield endpoint["url"], endpoint["token"]
    finally:
        proc.terminate()
        proc.wait(30)


def test_real_app_under_xvfb_shows_live_load(display: str, loaded_service: tuple[str, str], tmp_path: Path) -> None:
    url, token = loaded_service
    out = Path(os.environ.get("SLOTDECK_SCREENSHOTS") or tmp_path / "shots")
    env = {
        **os.environ,
        "DISPLAY": display,
        "QT_QPA_PLATFORM": "xcb",
        "SLOTDECK_TOKEN": token,
        "SLOTDECK_HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    result = subprocess.run(
        [sys.executable, str(HERE / "grab_app.py"), url, str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "state=live queues=5" in result.stdout
    for name in ("window.png", "screen.png", "tab1.png", "tab4.png"):
        image = QImage(str(out / name))
        assert not image.isNull() and image.width() >= 1200, name
    screen = QImage(str(out / "screen.png"))
    colours = {screen.pixel(x, y) for x in range(0, screen.width(), 23) for y in range(0, screen.height(), 23)}
    assert len(colours) > 10, "the X screen shows the drawn window, not an empty root"


def test_first_start_in_local_mode_lays_its_two_plots_out_evenly(display: str, tmp_path: Path) -> None:
    """A first start on a machine without GPUs: the default queue and the host, side by side, equal widths
    (under X the queue plot, with the longer legend, once got a third of the row and was cut off)."""
    out = Path(os.environ.get("SLOTDECK_SCREENSHOTS") or tmp_path / "shots") / "local"
    env = {
        **os.environ,
        "DISPLAY": display,
        "QT_QPA_PLATFORM": "xcb",
        "SLOTDECK_HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    result = subprocess.run(
        [sys.executable, str(HERE / "grab_app.py"), "local", str(out), "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "state=live queues=1" in result.stdout
    widths = json.loads(result.stdout.split("widths=")[1].splitlines()[0])
    assert len(widths) == 2 and abs(widths[0] - widths[1]) <= 0.05 * max(widths), widths


def test_three_servers_at_1280x800_fit_the_screen_and_a_refused_token_is_shown(
    loaded_service: tuple[str, str], tmp_path: Path
) -> None:
    """The fleet view in a real X window on a 1280x800 screen: two live connections and one whose token is
    refused; the window stays within the screen and every page is grabbed (fleet-*.png) for a person."""
    url, token = loaded_service
    out = Path(os.environ.get("SLOTDECK_SCREENSHOTS") or tmp_path / "shots") / "fleet"
    with xvfb_display("1280x800x24") as name:
        env = {
            **os.environ,
            "DISPLAY": name,
            "QT_QPA_PLATFORM": "xcb",
            "SLOTDECK_HOME": str(tmp_path / "home"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
        result = subprocess.run(
            [sys.executable, str(HERE / "grab_fleet.py"), str(out), "1280x800", f"{url}#{token}", f"{url}#{token}",
             f"{url}#sdk_refused"],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    facts = result.stdout.strip().splitlines()[-1]
    assert "states=live,live,unauthorized" in facts, facts
    width, height = (int(v) for v in facts.split("frame=")[1].split()[0].split("x"))
    assert width <= 1280 and height <= 800, facts
    for page in ("overview", "queues", "waiting-and-holding", "jobs", "devices", "audit", "cluster"):
        image = QImage(str(out / f"fleet-{page}.png"))
        assert not image.isNull() and image.width() >= 1200, page
