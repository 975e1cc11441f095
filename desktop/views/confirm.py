"""The one place the dashboard asks an operator to confirm a risky action.

Every view calls `confirm` through this module (``confirm.confirm(...)``), so a
test can answer the modal dialog by monkeypatching this single function.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget


def confirm(parent: QWidget | None, title: str, text: str) -> bool:
    """Ask a yes/no question; "No" is the default so that a stray Enter changes nothing."""
    answer = QMessageBox.question(
        parent,
        title,
        text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes
