"""The deployment's event stream in redis mode: one capped Redis stream whose entry ids are the SSE ids.

Key ``<prefix>:events`` (the deployment's hash tag), capped at about `STREAM_MAXLEN` entries (the oldest go).
Lease events are appended by the Redis function that makes them (cluster/library.py): each appears exactly
once, in the order Redis ran them, whichever process, remote client or reaper caused it. Job, prune and audit
events of each instance are appended beside them by `append` (in the order that instance published them), each
at most `ENTRY_MAX_BYTES` of JSON (a larger job event is cut to the job's identity, with ``"truncated": true``).

Every entry carries who may receive it (``staff``: every non-client role; ``clients``: client token names), so a
replay after `Last-Event-ID` is filtered like the live stream on every instance. `follow` reads new entries
with ``XREAD BLOCK`` on a connection of its own (socket timeout, reconnect with backoff: it never hangs after
Redis restarts or fails over); `after` reads what is kept after an id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aredis

from .slots import _NET_ERRORS
from .url import parse_cluster_url

if TYPE_CHECKING:
    from .admission import ClusterAdmission

log = logging.getLogger("slotdeck.cluster.events")

STREAM_MAXLEN = 10_000  # entries kept, about (MAXLEN ~; the Lua functions use the same EVENTS_MAX)
ENTRY_MAX_BYTES = 16 * 1024  # JSON of one appended entry at most
PENDING_MAX = 10_000  # appended entries waiting for Redis (unreachable): more are dropped, with a warning
READ_BLOCK_MS = 500  # one XREAD waits this long at most (also how soon `close` stops the reader)
PAGE = 500  # entries per XREAD / XRANGE call
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_WAITED = frozenset({"granted", "timed_out"})  # events whose `ms` is the time waited (else held)

StreamKey = tuple[int, int]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One entry: `id` (the SSE id), `key` (the id as numbers, for order), the SSE event type (`kind`: lease,
    job, prune, audit), its JSON `data`, and who may receive it (`staff`, `clients`: see api/visibility.py)."""

    id: str
    key: StreamKey
    kind: str
    data: str
    staff: bool
    clients: frozenset[str]


def stream_key(event_id: str) -> StreamKey | None:
    """``"<ms>-<seq>"`` as numbers; None for anything else (an id of an in-process server, garbage)."""
    if not _STREAM_ID.match(event_id):
        return None
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)


def decode(entry_id: str, fields: dict[str, str]) -> StreamEvent:
    """A stream entry as an event: a lease event from the Lua functions, or an entry `append` wrote."""
    key = stream_key(entry_id) or (0, 0)
    if fields.get("e") != "lease":
        clients = frozenset(json.loads(fields.get("c") or "[]"))
        return StreamEvent(entry_id, key, fields.get("e", "?"), fields.get("d", "{}"), fields.get("s") == "1", clients)
    name = fields.get("n", "?")
    data: dict[str, Any] = {"event": name}
    kind = fields.get("x")
    if kind == "l":
        data["lease"] = fields.get("i")
    elif kind == "w":
        data["waiter"] = fields.get("i")
    data["queue"] = fields.get("q")
    data["owner"] = fields.get("o") or None
    if "p" in fields:
        data["priority"] = int(fields["p"])
    if "ms" in fields:
        data["waited_s" if name in _WAITED else "held_s"] = int(fields["ms"]) / 1000
    if "f" in fields:
        data["fence"] = int(fields["f"])
    if "wn" in fields:
        data["waiting"] = int(fields["wn"])
    maker = fields.get("k")
    return StreamEvent(entry_id, key, "lease", json.dumps(data), True, frozenset((maker,)) if maker else frozenset())


def bounded(kind: str, data: dict[str, Any]) -> str:
    """`data` as JSON of at most ENTRY_MAX_BYTES: a larger job event keeps the job's identity only."""
    text = json.dumps(data, default=str)
    if len(text.encode()) <= ENTRY_MAX_BYTES:
        return text
    log.warning("a %s event of %d bytes was cut to fit the event stream", kind, len(text.encode()))
    job = data.get("job")
    keep = ("id", "state", "queue", "owner", "task", "attempt")
    small: dict[str, Any] = {"truncated": True}
    if isinstance(job, dict):
        small["job"] = {k: job[k] for k in keep if k in job and len(str(job[k])) <= 1024}
    return json.dumps(small, default=str)


class ClusterEventLog:
    """One server process's side of the stream: an ordered writer for its own entries and one reader.

    `admission`: the service's (connected by the time `start` runs). `deliver` gets each batch of new
    entries in stream order, on the event loop."""

    def __init__(self, admission: ClusterAdmission, deliver: Callable[[list[StreamEvent]], None]) -> None:
        self.admission = admission
        self.deliver = deliver
        self.key = f"{admission.slots.prefix}:events"
        self._redis_url = parse_cluster_url(admission.url).redis_url
        self._pending: deque[tuple[str, str, bool, frozenset[str]]] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.position: StreamKey = (0, 0)  # the last entry delivered
        self.dropped = 0  # appended entries dropped while Redis was unreachable

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write_forever(), name="slotdeck-cluster-events-write"),
            asyncio.create_task(self._read_forever(), name="slotdeck-cluster-events-read"),
        ]

    async def close(self) -> None:
        """Write what is pending (for a second at most), stop reading."""
        self._closing = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=READ_BLOCK_MS / 1000 + 1.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    # ------------------------------------------------------------------ writing

    def append(self, kind: str, data: dict[str, Any], staff: bool, clients: frozenset[str]) -> None:
        """Queue an entry for the stream (written in order, in the background; retried while Redis is away)."""
        if len(self._pending) >= PENDING_MAX:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("Redis unreachable: %d events not written to the event stream", self.dropped)
            return
        self._pending.append((kind, bounded(kind, data), staff, clients))
        self._wake.set()

    async def _write_forever(self) -> None:
        delay = 0.05
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(self._pending)[:PAGE]
            try:
                async with self.admission.slots.client.pipeline(transaction=False) as pipe:
                    for kind, text, staff, clients in batch:
                        pipe.xadd(
                            self.key,
                            {"e": kind, "d": text, "s": "1" if staff else "0", "c": json.dumps(sorted(clients))},
                            maxlen=STREAM_MAXLEN,
                            approximate=True,
                        )
                    await pipe.execute()
            except Exception as exc:  # unreachable, closed, failing over: retried below
                if self._closing:
                    return
                log.debug("writing events failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)
                continue
            delay = 0.05
            for _ in batch:
                self._pending.popleft()

    # ------------------------------------------------------------------ reading

    async def replay(
        self, event_id: str, wanted: Callable[[StreamEvent], bool], max_bytes: int
    ) -> tuple[str | None, list[StreamEvent]]:
        """`resume_point(event_id)` and the entries `after` it: read twice at most, as a pooled connection that died
        while idle (Redis restarted, a proxy dropped it) fails its first command; reading is safe to repeat.
        Raises what the second try raised."""
        try:
            return await self._replay_once(event_id, wanted, max_bytes)
        except _NET_ERRORS:
            return await self._replay_once(event_id, wanted, max_bytes)

    async def _replay_once(
        self, event_id: str, wanted: Callable[[StreamEvent], bool], max_bytes: int
    ) -> tuple[str | None, list[StreamEvent]]:
        resume = await self.resume_point(event_id)
        return resume, await self.after(resume, wanted, max_bytes)

    async def resume_point(self, event_id: str) -> str | None:
        """Where a client that last saw `event_id` resumes: that id when it is a stream id no newer than the
        stream's newest entry, else None (garbage, another server's id, or one past the stream's end: made up,
        or kept from a Redis that lost its data): all that is kept."""
        key = stream_key(event_id)
        if key is None:
            return None
        newest = stream_key(await self._tail(self.admission.slots.client))
        return event_id if newest is not None and key <= newest else None

    async def after(self, event_id: str | None, wanted: Callable[[StreamEvent], bool], max_bytes: int) -> list[StreamEvent]:
        """The kept entries after the stream id `event_id` (None: all kept) that `wanted` accepts, oldest first, at
        most `max_bytes` of data (the newest ones)."""
        start = f"({event_id}" if event_id is not None else "-"
        found: deque[StreamEvent] = deque()
        size = 0
        client = self.admission.slots.client
        for _ in range(STREAM_MAXLEN // PAGE + 2):  # the stream holds about STREAM_MAXLEN: a bounded walk
            rows: list[tuple[str, dict[str, str]]] = await client.xrange(self.key, start, "+", count=PAGE)  # type: ignore[assignment]
            for entry_id, fields in rows:
                event = decode(entry_id, fields)
                if wanted(event):
                    found.append(event)
                    size += len(event.data)
                    while size > max_bytes and len(found) > 1:
                        size -= len(found.popleft().data)
            if len(rows) < PAGE:
                break
            start = f"({rows[-1][0]}"
        return list(found)

    async def _tail(self, reader: aredis.Redis) -> str:
        """The newest entry's id now ("0-0" for an empty stream): the reader starts after it."""
        rows: list[tuple[str, dict[str, str]]] = await reader.xrevrange(self.key, "+", "-", count=1)  # type: ignore[assignment]
        return rows[0][0] if rows else "0-0"

    async def _read_forever(self) -> None:
        reader = aredis.Redis.from_url(
            self._redis_url,
            decode_responses=True,
            socket_connect_timeout=5.0,
            socket_timeout=READ_BLOCK_MS / 1000 + 5.0,  # a blocking read past this is a dead connection
            health_check_interval=10,
            max_connections=1,
        )
        last: str | None = None
        delay = 0.05
        try:
            while not self._closing:
                try:
                    if last is None:
                        last = await self._tail(reader)
                        self.position = stream_key(last) or (0, 0)
                    answer: Any = await reader.xread({self.key: last}, count=PAGE, block=READ_BLOCK_MS)
                    delay = 0.05
                except Exception as exc:  # unreachable, restarting, failing over, or a reply not expected
                    level = logging.DEBUG if isinstance(exc, _NET_ERRORS) else logging.WARNING
                    log.log(level, "reading events failed (%s); reconnecting", exc)
                    with contextlib.suppress(Exception):
                        await reader.connection_pool.disconnect()
                    await asyncio.sleep(delay)
                    delay = min(2.0, delay * 2)
                    continue
                for _stream, rows in answer or []:
                    if not rows:
                        continue
                    events = [decode(entry_id, fields) for entry_id, fields in rows]
                    last = rows[-1][0]
                    self.position = events[-1].key
                    try:
                        self.deliver(events)
                    except Exception:
                        log.exception("delivering events failed")
        finally:
            with contextlib.suppress(Exception):
                await reader.aclose()
