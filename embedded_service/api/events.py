"""Server-sent events: snapshots at a fixed rate, plus lease, job and audit events with
ids a reconnecting client sends back (Last-Event-ID) to get what it missed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..service import SlotService
from .snapshots import SnapshotCache

log = logging.getLogger("slotdeck.events")

EVENT_TYPES = ("snapshot", "lease", "job", "prune", "audit")
JOB_EVENTS = frozenset({"job", "prune"})  # a job changed; finished jobs were pruned by retention ({"jobs": [ids]})
REPLAY_EVENTS = 4096  # events kept for clients that reconnect
SUBSCRIBER_BACKLOG = 2048  # a client further behind than this is dropped (it reconnects and resumes)

_CLOSE = object()


def sse_frame(event: str, data: bytes | str, event_id: str | None = None) -> bytes:
    payload = data.decode() if isinstance(data, bytes) else data
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {payload}\n\n".encode()


def describe(event: str, fields: dict[str, Any]) -> str:
    """One operator-readable log line for an engine event: what, queue, owner, ids."""
    parts = [event]
    for key in ("queue", "owner", "lease", "waiter", "priority", "fence", "waited_s", "held_s"):
        value = fields.get(key)
        if value is None:
            continue
        parts.append(f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


class EventBroker:
    """Numbers events, keeps the recent ones for replay and fans them out to subscribers."""

    def __init__(
        self,
        service: SlotService,
        snapshots: SnapshotCache,
        snapshot_hz: float = 2.0,
        observers: list[Callable[[str, dict[str, Any]], None]] | None = None,
    ) -> None:
        self.service = service
        self.snapshots = snapshots
        self.period_s = 1.0 / snapshot_hz
        self.boot = secrets.token_hex(4)
        self.observers = observers or []
        self._seq = 0
        self._replay: deque[tuple[int, str, bytes]] = deque(maxlen=REPLAY_EVENTS)
        self._subscribers: dict[asyncio.Queue[Any], frozenset[str]] = {}  # each with the event types it asked for
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._consume(), name="slotdeck-events"),
            asyncio.create_task(self._tick(), name="slotdeck-snapshots"),
        ]

    async def close(self) -> None:
        """End every stream (clients reconnect to the next server) and stop the tasks."""
        self.closed = True
        for queue in list(self._subscribers):
            self._offer(queue, _CLOSE, force=True)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def publish(self, event: str, data: dict[str, Any]) -> str:
        """Number an event, keep it for replay and send it to every subscriber; returns its id."""
        self._seq += 1
        event_id = f"{self.boot}-{self._seq}"
        frame = sse_frame(event, json.dumps(data, default=str), event_id)
        self._replay.append((self._seq, event, frame))
        for queue, types in list(self._subscribers.items()):
            if event in types:
                self._offer(queue, frame)
        return event_id

    def _offer(self, queue: asyncio.Queue[Any], item: Any, force: bool = False) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            if force:
                queue.get_nowait()
                queue.put_nowait(item)
                return
            log.warning("dropping an event stream that fell %d events behind", SUBSCRIBER_BACKLOG)
            self._subscribers.pop(queue, None)
            queue.get_nowait()
            queue.put_nowait(_CLOSE)

    async def _consume(self) -> None:
        async for event, fields in self.service.events():
            try:
                if event in JOB_EVENTS:
                    self.publish(event, fields)
                    continue
                for observe in self.observers:
                    observe(event, fields)
                if log.isEnabledFor(logging.INFO):
                    log.info(describe(event, fields), extra={"slotdeck": {"event": event, **fields}})
                self.publish("lease", {"event": event, **fields})
            except Exception:
                log.exception("could not publish event %s", event)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            watchers = [queue for queue, types in self._subscribers.items() if "snapshot" in types]
            if watchers:
                frame = sse_frame("snapshot", self.snapshots.json())
                try:
                    await self.snapshots.service.keeper.sync()  # totals shown are stored first
                except Exception:
                    log.exception("could not store queue totals before a snapshot")
                for queue in watchers:
                    self._offer(queue, frame)

    def _missed(self, last_event_id: str | None, types: frozenset[str]) -> list[bytes]:
        if not last_event_id:
            return []
        boot, _, number = last_event_id.rpartition("-")
        after = int(number) if boot == self.boot and number.isdigit() else 0  # another server run: all that is kept
        return [frame for seq, event, frame in self._replay if seq > after and event in types]

    async def stream(
        self, last_event_id: str | None = None, types: frozenset[str] = frozenset(EVENT_TYPES)
    ) -> AsyncIterator[bytes]:
        """A subscriber's frames of the asked `types`: a snapshot now, what it missed, then live events until close.

        A dashboard that draws snapshots and lists jobs need not be sent (and parse) every
        lease event of a busy server: thousands a second."""
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=SUBSCRIBER_BACKLOG)
        backlog = self._missed(last_event_id, types)
        self._subscribers[queue] = types
        try:
            if "snapshot" in types:
                yield sse_frame("snapshot", self.snapshots.json())
            for frame in backlog:
                yield frame
            while not self.closed:
                item = await queue.get()
                if item is _CLOSE:
                    return
                yield item
        finally:
            self._subscribers.pop(queue, None)
