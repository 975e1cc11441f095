"""Server-sent events: snapshots at a fixed rate, plus lease, job and audit events with
ids a reconnecting client sends back (Last-Event-ID) to get what it missed.

In-process, events are numbered per server run (``<boot>-<n>``) and the recent ones kept in memory. In redis
mode they are the deployment's (`cluster.events`): ids are the Redis stream's, every instance sends the same
events with the same ids in the same order, and `Last-Event-ID` resumes on any instance, across restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ..service import SlotService
from .snapshots import SnapshotCache
from .visibility import EVERYONE_BUT_CLIENTS, Audience, OwnerOf, masked_fields, own_snapshot, visible_ids

if TYPE_CHECKING:
    from ..cluster.events import ClusterEventLog, StreamEvent

log = logging.getLogger("slotdeck.events")

EVENT_TYPES = ("snapshot", "lease", "job", "prune", "audit")
JOB_EVENTS = frozenset({"job", "prune"})  # a job changed; finished jobs were pruned by retention ({"jobs": [ids]})
REPLAY_EVENTS = 4096  # events kept for clients that reconnect
REPLAY_BYTES = 16 * 1024 * 1024  # and at most this many bytes of them
JOB_OWNERS_KEPT = 100_000  # job id -> owner, for telling each client only of its own pruned jobs
SUBSCRIBER_BACKLOG = 2048  # a client further behind than this is dropped (it reconnects and resumes)
KEEPALIVE_S = 10.0  # a stream that carries no snapshots gets a comment this often, so clients see it is alive
KEEPALIVE = b": keep-alive\n\n"
SNAPSHOT_INTERVAL_MAX_S = 10.0  # the slowest snapshot pace a stream may ask for (clients drop a stream silent 30 s)

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
        owner_of: OwnerOf | None = None,
        replay_bytes: int = REPLAY_BYTES,
    ) -> None:
        self.service = service
        self.snapshots = snapshots
        self.period_s = 1.0 / snapshot_hz
        self.boot = secrets.token_hex(4)
        self.observers = observers or []
        self.owner_of: OwnerOf = owner_of or (lambda _: None)
        self.replay_bytes = replay_bytes
        self._seq = 0
        self._replay: deque[tuple[int, str, bytes, Audience]] = deque()
        self._replay_size = 0
        # each subscriber with the event types it asked for and, for a client token, its name (see visibility)
        self._subscribers: dict[asyncio.Queue[Any], tuple[frozenset[str], str | None]] = {}
        self._job_owners: dict[str, str] = {}
        self._holders: dict[asyncio.Queue[Any], str] = {}  # each stream's token name: revoking it ends the stream
        # streams that asked for fewer snapshots: (seconds between two, loop time the next one is due)
        self._paces: dict[asyncio.Queue[Any], tuple[float, float]] = {}
        self._revisions: dict[str, int] = {}  # how often each token name was revoked or replaced
        self._client_snapshots: dict[str, tuple[Any, bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False
        self.cluster_log: ClusterEventLog | None = None  # redis mode: the deployment's stream
        if service.cluster is not None:
            from ..cluster.events import ClusterEventLog

            self.cluster_log = ClusterEventLog(service.cluster, self._deliver)

    async def start(self) -> None:
        if self.cluster_log is not None:
            await self.cluster_log.start()
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
        if self.cluster_log is not None:
            await self.cluster_log.close()

    def publish(self, event: str, data: dict[str, Any], audience: Audience = EVERYONE_BUT_CLIENTS) -> str:
        """Number an event, keep it for replay and send it to every subscriber in `audience`; returns its id.

        The replay keeps at most REPLAY_EVENTS events and REPLAY_BYTES bytes (the oldest go first).
        Redis mode: the event goes to the deployment's stream (written in the background, sent to subscribers
        as the stream gives it back, with its stream id); returns "" (the id is not known yet)."""
        if self.cluster_log is not None:
            self.cluster_log.append(event, data, audience.staff, audience.clients)
            return ""
        self._seq += 1
        event_id = f"{self.boot}-{self._seq}"
        frame = sse_frame(event, json.dumps(data, default=str), event_id)
        self._replay.append((self._seq, event, frame, audience))
        self._replay_size += len(frame)
        while len(self._replay) > REPLAY_EVENTS or (self._replay_size > self.replay_bytes and len(self._replay) > 1):
            self._replay_size -= len(self._replay.popleft()[2])
        for queue, (types, client) in list(self._subscribers.items()):
            if event in types and audience.admits(client):
                self._offer(queue, frame)
        return event_id

    @property
    def replay_size(self) -> tuple[int, int]:
        """(events, bytes) kept for replay."""
        return len(self._replay), self._replay_size

    def _publish_job(self, fields: dict[str, Any]) -> None:
        job = fields.get("job")
        if not isinstance(job, dict):
            self.publish("job", fields)
            return
        owner = job.get("owner")
        if isinstance(owner, str) and isinstance(job.get("id"), str):
            self._job_owners.pop(job["id"], None)
            self._job_owners[job["id"]] = owner
            if len(self._job_owners) > JOB_OWNERS_KEPT:
                del self._job_owners[next(iter(self._job_owners))]
        self.publish("job", {**fields, "job": masked_fields(job)}, Audience.of(owner if isinstance(owner, str) else None))

    def _publish_prune(self, fields: dict[str, Any]) -> None:
        ids = [str(i) for i in fields.get("jobs", [])]
        self.publish("prune", fields)  # everyone but clients: the whole list
        for owner in {self._job_owners[i] for i in ids if i in self._job_owners}:
            own = {**fields, "jobs": visible_ids(ids, self._job_owners, owner)}
            self.publish("prune", own, Audience.of(owner, staff=False))
        for i in ids:
            self._job_owners.pop(i, None)

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
                if event == "job":
                    self._publish_job(fields)
                    continue
                if event == "prune":
                    self._publish_prune(fields)
                    continue
                for observe in self.observers:
                    observe(event, fields)
                if log.isEnabledFor(logging.INFO):
                    log.info(describe(event, fields), extra={"slotdeck": {"event": event, **fields}})
                if self.cluster_log is not None:
                    continue  # redis mode: the Redis functions put every lease event on the stream
                made_by = self.owner_of(str(fields.get("lease") or fields.get("waiter") or ""))
                self.publish("lease", {"event": event, **fields}, Audience.of(made_by))
            except Exception:
                log.exception("could not publish event %s", event)

    def _deliver(self, events: list[StreamEvent]) -> None:
        """Redis mode: new stream entries, in stream order, to the subscribers that may receive them
        (queued with their position, so a stream that replayed up to some entry skips what it already sent)."""
        for ev in events:
            audience = Audience(ev.staff, ev.clients)
            frame: bytes | None = None
            for queue, (types, client) in list(self._subscribers.items()):
                if ev.kind in types and audience.admits(client):
                    if frame is None:
                        frame = sse_frame(ev.kind, ev.data, ev.id)
                    self._offer(queue, (ev.key, frame))

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_keepalive = loop.time() + KEEPALIVE_S
        while True:
            await asyncio.sleep(self.period_s)
            watchers = [(queue, client) for queue, (types, client) in self._subscribers.items() if "snapshot" in types]
            if watchers:
                await self.snapshots.service.keeper.sync_shown()  # totals shown are stored first
            frames: dict[str | None, bytes] = {}
            now = loop.time()
            for queue, client in watchers:
                pace = self._paces.get(queue)
                if pace is not None:
                    if now < pace[1]:
                        continue  # skipped: a later tick sends that stream the newest snapshot instead
                    self._paces[queue] = (pace[0], max(pace[1] + pace[0], now))
                if client not in frames:
                    frames[client] = sse_frame("snapshot", self.snapshot_json(client))
                self._offer(queue, frames[client])
            if loop.time() >= next_keepalive:
                next_keepalive = loop.time() + KEEPALIVE_S
                for queue, (types, _client) in list(self._subscribers.items()):
                    if "snapshot" not in types:
                        self._offer(queue, KEEPALIVE)

    def snapshot_json(self, client: str | None = None) -> bytes:
        """The snapshot as `client` (a client token's name, or None for the other roles) may see it."""
        if client is None:
            return self.snapshots.json()
        model = self.snapshots.model()
        cached = self._client_snapshots.get(client)
        if cached is not None and cached[0] is model:  # the same snapshot build: the same view of it
            return cached[1]
        data = own_snapshot(model, client, self.owner_of).model_dump_json().encode()
        if len(self._client_snapshots) > 1000:
            self._client_snapshots.clear()
        self._client_snapshots[client] = (model, data)
        return data

    def _missed(self, last_event_id: str | None, types: frozenset[str], client: str | None) -> list[bytes]:
        if not last_event_id:
            return []
        boot, _, number = last_event_id.rpartition("-")
        after = int(number) if boot == self.boot and number.isdigit() else 0  # another server run: all that is kept
        return [
            frame
            for seq, event, frame, audience in self._replay
            if seq > after and event in types and audience.admits(client)
        ]

    async def _missed_in_stream(
        self, last_event_id: str, types: frozenset[str], client: str | None
    ) -> tuple[tuple[int, int], list[bytes]]:
        """Redis mode: what the stream keeps after `last_event_id` for this subscriber (at most `replay_bytes`,
        the newest), and the position up to which live entries are skipped (sent, or seen before)."""
        from ..cluster.events import stream_key

        assert self.cluster_log is not None

        def wanted(ev: StreamEvent) -> bool:
            return ev.kind in types and Audience(ev.staff, ev.clients).admits(client)

        try:
            # shielded: a redis-py call cancelled half-way (the client hung up) can hang its connection
            resume, found = await asyncio.shield(self.cluster_log.replay(last_event_id, wanted, self.replay_bytes))
        except Exception as exc:  # Redis away: the live stream still comes; the client misses what it missed
            log.warning("could not read the event stream after %s: %s", last_event_id[:40], exc)
            resume, found = None, []
        # an id past the stream's end is no floor: it would skip every live entry (a silent stream)
        floor = max(stream_key(resume or "") or (-1, -1), found[-1].key if found else (-1, -1))
        return floor, [sse_frame(ev.kind, ev.data, ev.id) for ev in found]

    async def stream(
        self,
        last_event_id: str | None = None,
        types: frozenset[str] = frozenset(EVENT_TYPES),
        client: str | None = None,
        holder: str | None = None,
        snapshot_interval_s: float = 0.0,
    ) -> AsyncIterator[bytes]:
        """A subscriber's frames of the asked `types`: a snapshot now, what it missed, then live events until close.

        A dashboard that draws snapshots and lists jobs need not be sent (and parse) every
        lease event of a busy server: thousands a second. `client` (a client token's name) limits the
        stream to what that client may read (see `visibility`); None is every other role's view. `holder`
        (the token's name) lets `end_streams_of` end it when that token is revoked or replaced.
        `snapshot_interval_s` (0 to SNAPSHOT_INTERVAL_MAX_S, checked by the route) slows this stream's snapshots:
        at most one per that many seconds, always the newest (the ones in between are never queued); 0 (or less
        than the server's period) is every snapshot. Other events are not slowed."""
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=SUBSCRIBER_BACKLOG)
        floor: tuple[int, int] = (-1, -1)  # redis mode: live entries up to here were replayed (or seen) already
        backlog = self._missed(last_event_id, types, client) if self.cluster_log is None else []
        self._subscribers[queue] = (types, client)
        if holder is not None:
            self._holders[queue] = holder
        if snapshot_interval_s > self.period_s:
            self._paces[queue] = (snapshot_interval_s, asyncio.get_running_loop().time() + snapshot_interval_s)
        try:
            if self.cluster_log is not None and last_event_id:  # registered first: nothing falls in between
                floor, backlog = await self._missed_in_stream(last_event_id, types, client)
            if "snapshot" in types:
                yield sse_frame("snapshot", self.snapshot_json(client))
            for frame in backlog:
                yield frame
            while not self.closed:
                item = await queue.get()
                if item is _CLOSE:
                    return
                if type(item) is tuple:  # redis mode: (stream position, frame)
                    if item[0] <= floor:
                        continue
                    item = item[1]
                yield item
        finally:
            self._subscribers.pop(queue, None)
            self._holders.pop(queue, None)
            self._paces.pop(queue, None)

    def holders(self) -> set[str]:
        """The token names of the open streams (those opened with a `holder`)."""
        return set(self._holders.values())

    def token_revision(self, holder: str) -> int:
        """A number that changes when the token named `holder` is revoked or replaced (other streams watch it)."""
        return self._revisions.get(holder, 0)

    def end_streams_of(self, holder: str) -> int:
        """End the open streams of the token named `holder` (revoked or replaced); returns how many."""
        self._revisions[holder] = self._revisions.get(holder, 0) + 1
        queues = [queue for queue, name in self._holders.items() if name == holder]
        for queue in queues:
            self._subscribers.pop(queue, None)  # nothing more is sent to it
            self._offer(queue, _CLOSE, force=True)
        return len(queues)
