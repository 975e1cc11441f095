"""Light and dark themes from `desktop/resources/themes` (shipped inside the package so installers carry them)."""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

RESOURCES = Path(__file__).resolve().parent / "resources"
THEMES = ("light", "dark")
PLOT_COLORS = {"light": ("#ffffff", "#1f2328"), "dark": ("#0d1117", "#c9d1d9")}


def app_icon() -> QIcon:
    """The app icon, from SVG so it is sharp at every device pixel ratio."""
    return QIcon(str(RESOURCES / "icons" / "slotdeck.svg"))


def apply_theme(app: QApplication, name: str) -> str:
    """Apply a theme by name (an unknown name falls back to light); returns the name applied.

    Plots created later take the theme's colours from pyqtgraph's options; open ones are recoloured here.
    """
    if name not in THEMES:
        name = "light"
    app.setStyleSheet((RESOURCES / "themes" / f"{name}.qss").read_text(encoding="utf-8"))
    background, foreground = PLOT_COLORS[name]
    pg.setConfigOptions(background=background, foreground=foreground, antialias=False)
    for widget in app.allWidgets():
        if isinstance(widget, pg.PlotWidget):
            widget.setBackground(background)
            for axis in ("left", "bottom", "right"):
                widget.getPlotItem().getAxis(axis).setTextPen(foreground)
    return name
