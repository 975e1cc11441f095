"""Code defaults vs operator changes, per queue field.

`configure_queue` in code (or the server's configuration) sets a queue's
*configured* values. A live change by an operator (API PUT/PATCH/pause/resume,
or `SlotService.update_queue`/`set_limit`/`pause`/`resume` from Python) is an
*override*: it is stored with who made it and when, survives restarts and wins
over the configured value, until an operator resets the field (or sets it back
to the configured value, which is the same thing).

Pure bookkeeping; `SlotService` applies the results to the engine and stores
the records (`Store.save_overrides`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .model import FieldOverride, QueueConfig, QueueOverrides

FIELDS: tuple[str, ...] = tuple(name for name in QueueConfig.model_fields if name != "name")
PYTHON_ACTOR = "python"  # `by` of a live change made by Python code without an operator's name


def field_defaults() -> dict[str, Any]:
    return {name: field.get_default() for name, field in QueueConfig.model_fields.items() if name != "name"}


def check_fields(fields: list[str]) -> None:
    """ValueError naming the first field that is not a queue field."""
    for name in fields:
        if name not in FIELDS:
            raise ValueError(f"unknown queue field {name!r}; queue fields are: {', '.join(FIELDS)}")


def note_operator(record: QueueOverrides, fields: dict[str, Any], by: str, at: float, only: Collection[str]) -> None:
    """Mark the `fields` (those in `only`) an operator set in `record`: an override each, or none where the
    value is the configured one (setting a field back to it is a reset)."""
    for field, value in fields.items():
        if field not in only:
            continue
        if record.configured.get(field) == value:
            record.overrides.pop(field, None)
        else:
            record.overrides[field] = FieldOverride(value=value, by=by, at=at)


class OverrideBook:
    def __init__(self) -> None:
        self.records: dict[str, QueueOverrides] = {}
        self._coded: set[str] = set()  # queues code configured in this process

    def record(self, name: str) -> QueueOverrides:
        record = self.records.get(name)
        if record is None:
            record = self.records[name] = QueueOverrides(configured=field_defaults())
        return record

    def code(self, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Code configures `fields`; returns what to apply: those fields with any operator override on top."""
        record = self.record(name)
        self._coded.add(name)
        record.configured.update(fields)
        return {**fields, **{field: o.value for field, o in record.overrides.items()}}

    def operator(self, name: str, fields: dict[str, Any], by: str, at: float) -> None:
        """An operator set `fields` live: an override each, or none where the value is the configured one."""
        note_operator(self.record(name), fields, by, at, FIELDS)

    def reset(self, name: str, fields: list[str]) -> dict[str, Any]:
        """Drop the overrides of `fields`; returns their configured values to apply."""
        check_fields(fields)
        record = self.record(name)
        for field in fields:
            record.overrides.pop(field, None)
        return {field: record.configured.get(field) for field in fields}

    def loaded(self, name: str, stored: QueueConfig, saved: QueueOverrides | None) -> dict[str, Any]:
        """At start: merge what the store kept for a queue; returns the fields to apply to the engine.

        A queue code configured this run keeps code's configured values and gets the stored overrides on top.
        One only the store knows gets its stored configured values (for an old store without a record: its
        stored config) and overrides, or, with neither, simply its stored config.
        """
        if name in self._coded:
            record = self.record(name)
            if saved is not None:
                record.overrides = dict(saved.overrides)
            return {field: o.value for field, o in record.overrides.items()}
        if saved is None:
            self.records[name] = QueueOverrides(configured=stored.model_dump(exclude={"name"}))
            return stored.model_dump(exclude={"name"})
        record = self.records[name] = QueueOverrides(
            configured={**field_defaults(), **saved.configured}, overrides=dict(saved.overrides)
        )
        return {**record.configured, **{field: o.value for field, o in record.overrides.items()}}

    def forget(self, name: str) -> None:
        self.records.pop(name, None)
        self._coded.discard(name)

    def view(self, name: str) -> tuple[dict[str, Any], dict[str, FieldOverride]]:
        """(configured, overrides) of a queue, for the API."""
        record = self.records.get(name)
        if record is None:
            return field_defaults(), {}
        return dict(record.configured), dict(record.overrides)
