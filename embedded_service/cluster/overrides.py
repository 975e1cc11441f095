"""Operator changes vs code config in redis mode: the in-process rule (`overrides.py`) for a whole deployment.

An operator's live change of a queue's admission fields (limit, paused, max_waiting, rate, burst, timeout_s,
per_gpu, placement;
HTTP PUT/PATCH/pause/resume through any instance, or `update_queue` from Python) is recorded in Redis beside
the deployment's keys: hash ``{sd:<namespace>}:overrides``, one field per queue holding a `QueueOverrides` as
JSON (``configured``: what code/config of the last process that published gave each field; ``overrides``:
``{field: {value, by, at}}``). A process that publishes its code configuration (at its start, or a
`configure_queue` later) publishes the operator's value instead for every overridden field, so an operator's
change survives restarts of every instance and wins over code until `reset` ("reset to configured") gives the
field back: its override goes and the configured value is published again. Setting a field back to its
configured value is the same as a reset, as in-process.

Each record changes in one optimistic transaction (WATCH/MULTI), so two instances never lose each other's
marks. A code publish and an operator change may still cross (the publish read no mark, the operator's value
landed first, then the code value): a publish therefore reads the marks again after it and re-publishes the
operator's values while they differ (bounded).

Not covered: the field Redis does not keep (stuck_after_s) is each process's own, and an operator's change of
it stays on the instance that made it until its restart, as before. Without Redis
persistence the marks go with the rest of the deployment's data.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from pydantic import ValidationError
from redis.exceptions import WatchError

from ..model import QueueConfig, QueueOverrides
from ..overrides import OverrideBook, check_fields, field_defaults, note_operator
from .slots import ClusterSlots

# what Redis keeps per queue (`admission.CLUSTER_FIELDS`)
ADMISSION_FIELDS = ("limit", "paused", "max_waiting", "rate", "burst", "timeout_s", "per_gpu", "placement")
WATCH_TRIES = 50  # optimistic transaction retries before a change is given up (StoreFault-free: raises RuntimeError)
REPUBLISH_TRIES = 3


class ClusterOverrides(OverrideBook):
    """The deployment's operator overrides. `records` (what `view` shows the API) is the last reading from
    Redis (`read`, with every refresh of the cluster view) and the changes this process made since."""

    def __init__(self, slots: ClusterSlots) -> None:
        super().__init__()
        self.slots = slots

    @property
    def key(self) -> str:
        return f"{self.slots.prefix}:overrides"

    async def read(self) -> None:
        """Take the deployment's records from Redis (a record that cannot be read is skipped)."""
        raw: dict[str, str] = await self.slots.client.hgetall(self.key)  # type: ignore[assignment]
        records = {}
        for name, data in raw.items():
            try:
                records[name] = QueueOverrides.model_validate_json(data)
            except ValidationError:
                continue
        self.records = records

    async def values(self, name: str) -> dict[str, Any]:
        """The operator's value of each overridden admission field of queue `name`, read from Redis now."""
        data = await self.slots.client.hget(self.key, name)
        if not data:
            return {}
        return {field: o.value for field, o in QueueOverrides.model_validate_json(data).overrides.items()}

    async def coded(self, config: QueueConfig, paused_given: bool) -> dict[str, Any]:
        """Code configures `config` (its `paused` only when `paused_given`): record the configured values (every
        field, for the API's `configured`) and return the operator's overrides, which win over them."""
        fields = config.model_dump(exclude={"name"} if paused_given else {"name", "paused"})
        record = await self._change(config.name, lambda r: r.configured.update(fields))
        return {field: o.value for field, o in record.overrides.items()}

    async def operator_set(self, name: str, fields: dict[str, Any], by: str, at: float) -> None:
        """An operator set `fields` live: an override each (admission fields only), or none where the value
        is the configured one."""
        if ADMISSION_FIELDS & fields.keys():
            await self._change(name, lambda record: note_operator(record, fields, by, at, ADMISSION_FIELDS))

    async def reset_fields(self, name: str, fields: Collection[str]) -> dict[str, Any]:
        """Drop the overrides of `fields` (ValueError for a name that is not a queue field); returns the
        configured values of those that Redis keeps, to publish again."""
        check_fields(list(fields))
        chosen = [field for field in fields if field in ADMISSION_FIELDS]

        def drop(record: QueueOverrides) -> None:
            for field in chosen:
                record.overrides.pop(field, None)

        record = await self._change(name, drop)
        return {field: record.configured.get(field) for field in chosen}

    async def _change(self, name: str, change: Callable[[QueueOverrides], None]) -> QueueOverrides:
        """Read, change and write queue `name`'s record in one optimistic transaction; returns the record written."""
        async with self.slots.client.pipeline(transaction=True) as pipe:
            for _ in range(WATCH_TRIES):
                try:
                    await pipe.watch(self.key)
                    data = await pipe.hget(self.key, name)
                    record = (
                        QueueOverrides.model_validate_json(data) if data else QueueOverrides(configured=field_defaults())
                    )
                    change(record)
                    pipe.multi()
                    pipe.hset(self.key, name, record.model_dump_json())
                    await pipe.execute()
                except WatchError:
                    continue
                self.records[name] = record
                return record
        raise RuntimeError(f"queue {name!r}: its override record kept changing under {WATCH_TRIES} tries")
