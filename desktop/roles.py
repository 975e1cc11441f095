"""What a token's role lets the dashboard do, and why not, in words for a disabled button's tooltip.

Roles rank viewer < client < operator < admin (as the server's `auth.RANK`).
A client may submit, and cancel or retry its own jobs and waiters; queue
changes and force-release need an operator. An unknown role ("", a server
without `/v1/whoami`) allows everything: the server still refuses, and says so.
"""

from __future__ import annotations

from enum import StrEnum

from PySide6.QtWidgets import QWidget

RANK = {"viewer": 0, "client": 1, "operator": 2, "admin": 3}


class Act(StrEnum):
    """An operator action the dashboard offers, by the least role the server wants for it."""

    submit = "client"
    cancel_job = "client"  # own jobs only, for a client: the server hides others' jobs from it
    retry_job = "client"
    cancel_waiter = "client"  # own waiters only, for a client
    revoke = "operator"
    edit_queue = "operator"


def allows(role: str, act: Act) -> bool:
    """Whether `role` may do `act`; an unknown role is not second-guessed (the server decides)."""
    return role not in RANK or RANK[role] >= RANK[act.value]


def why_not(role: str, act: Act) -> str:
    """The tooltip of a button this role may not use ("" when it may)."""
    if allows(role, act):
        return ""
    return f"Needs the {act.value} role; this connection's token is a {role}."


def gate(button: QWidget, act: Act, role: str, ready: bool, tip: str = "") -> None:
    """Enable `button` when `ready` and the role allows `act`; its tooltip says why it is not."""
    why = why_not(role, act)
    button.setEnabled(ready and not why)
    button.setToolTip(why or tip)
