"""One human line per audit entry: what changed, as "limit 1 -> 4", not two JSON documents."""

from __future__ import annotations

import datetime as dt
from typing import Any

from embedded_service.model import AuditEntry

_TIME_FIELDS = frozenset({"at", "granted_at", "enqueued_at", "expires_at", "deadline", "in_use_at", "waiting_at"})


def _value(field: str, value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if field in _TIME_FIELDS and isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value).strftime("%H:%M:%S")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def changed_fields(before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for each top-level field that differs between two dicts; [] otherwise."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return []
    fields = [k for k in (*before, *(k for k in after if k not in before)) if before.get(k) != after.get(k)]
    return [(k, before.get(k), after.get(k)) for k in fields]


def summarize(entry: AuditEntry) -> str:
    """A short sentence: "limit 1 -> 4", "paused", "created (limit 2)", "cancelled job (running -> cancelled)"."""
    action, before, after = entry.action, entry.before, entry.after
    kind, _, verb = action.partition(".")
    if kind == "queue":
        if verb == "pause":
            return "paused"
        if verb == "resume":
            return "resumed"
        if verb == "delete":
            return "deleted" + (f" (limit was {before.get('limit')})" if isinstance(before, dict) else "")
        if verb == "reset_marks":
            return "peaks reset" + (
                f" (in use {before.get('in_use')}, waiting {before.get('waiting')})" if isinstance(before, dict) else ""
            )
        if verb == "create" and isinstance(after, dict):
            return f"created (limit {after.get('limit')})"
        changes = changed_fields(before, after)
        if changes:
            return ", ".join(f"{k} {_value(k, b)} -> {_value(k, a)}" for k, b, a in changes)
        return f"{verb.replace('_', ' ')}: no change"
    if action == "job.cancel":
        return f"job cancelled ({_value('', before)} -> {_value('', after)})"
    if action == "lease.revoke" and isinstance(before, dict):
        holder = f"job {before['job_id']}" if before.get("job_id") else before.get("owner") or "an unnamed client"
        return f"force-released {holder}'s slot in {before.get('queue')} (fence {before.get('fence')})"
    if action == "waiter.cancel" and isinstance(before, dict):
        return f"cancelled {before.get('owner') or 'an unnamed client'}'s wait in {before.get('queue')}"
    if action == "token.create" and isinstance(after, dict):
        return f"token created (role {after.get('role')})"
    if action == "token.delete":
        return "token revoked"
    changes = changed_fields(before, after)
    if changes:
        return ", ".join(f"{k} {_value(k, b)} -> {_value(k, a)}" for k, b, a in changes)
    if before is None and after is None:
        return action
    return f"{_value('', before)} -> {_value('', after)}"
