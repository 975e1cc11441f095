"""`Connection`: one SlotDeck server seen from the dashboard.

It is the only place the desktop does I/O. Under the qasync loop it backfills
history, jobs and audit, then follows `/v1/events` and turns each event into a
Qt signal. When the server goes away it says so, greys out (stale), reconnects
with backoff and resumes the event stream where it left off. A cluster (several
`slotdeck serve` on one Redis) is one connection with several instance URLs: when
the instance in use stops answering, the connection moves to the next one and
resumes the stream there, so the page and its graphs stay. Operator actions
are queued as tasks; their outcome comes back as `action_done` or
`action_failed` with a sentence a person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from PySide6.QtCore import QObject, QTimer, Signal

from embedded_service.client import AsyncClient, AuthError, ConnectionFailed
from embedded_service.errors import SlotDeckError
from embedded_service.model import AuditEntry, CommandSubmit, Job, Snapshot

from . import extra_calls
from .batching import LineBatch
from .instance_urls import InstanceUrls, reported_urls

log = logging.getLogger("slotdeck.desktop.connection")

HISTORY_BACKFILL_S = 3600
JOBS_BACKFILL_PAGES = 20  # 20 pages of 1,000: the newest 20,000 jobs; later ones arrive as events
AUDIT_BACKFILL = 200
LOG_PAGE_BYTES = 128 * 1024  # one page of a job's log: the last one first, then earlier ones on request
# not "lease": a busy server sends thousands a second, and the snapshot carries what the views show of them
DRAWN_EVENTS = ("snapshot", "job", "prune", "audit")
REPLAY_KEPT = "replay-0"  # an id of no server run: the server answers with all the events it keeps
BACKGROUND_SNAPSHOT_S = 1.0  # a connection out of focus asks its server for one snapshot a second (`background`)
# and reads at most two a second from a server too old to honour that (it sends all it makes)
BACKGROUND_READ_MIN_S = BACKGROUND_SNAPSHOT_S / 2
STALE_AFTER_S = 5.0  # snapshots come at 2 Hz by default: 5 s without one means the figures are old
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STEADY_AFTER_S = 10.0  # live this long before a drop counts as a fresh start (a flapping stream backs off)

ClientFactory = Callable[["ConnectionSpec", "str | None"], AsyncClient]


@dataclass(frozen=True)
class ConnectionSpec:
    """What the operator configured for one server; never holds the token (that lives in the keyring)."""

    name: str
    url: str
    ca_file: str | None = None
    local: bool = False
    remember: bool = True  # saved for the next run (not the local service, nor a --connect of one run)
    extra_urls: tuple[str, ...] = ()  # a cluster's other instances, as the operator listed them
    learnt_urls: tuple[str, ...] = ()  # a cluster's instances as its snapshots last reported them (`InstanceInfo.url`)

    def instance_urls(self) -> InstanceUrls:
        """Every URL of this server in the order they are tried: `url`, `extra_urls`, `learnt_urls`."""
        return InstanceUrls(self.url, self.extra_urls, self.learnt_urls)


class LinkState(StrEnum):
    connecting = "connecting"
    live = "live"
    reconnecting = "reconnecting"
    unauthorized = "unauthorized"
    failed = "failed"  # could not even set up a client (e.g. an unreadable CA file): nothing to retry
    closed = "closed"


def default_client(spec: ConnectionSpec, token: str | None) -> AsyncClient:
    return AsyncClient(spec.url, token, verify=spec.ca_file or True)


def backoff_delays(first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> Callable[[int], float]:
    """Delay before reconnect attempt n (0-based): doubling from `first_s` up to `max_s`, with +-20% jitter
    so that many dashboards do not hammer a restarted server in step."""

    def delay(attempt: int) -> float:
        base = min(max_s, first_s * (2 ** min(attempt, 16)))
        return base * random.uniform(0.8, 1.2)

    return delay


class Connection(QObject):
    """Signals carry model objects; slots are plain methods that schedule asyncio work."""

    state_changed = Signal(str, str)  # LinkState value, a sentence for the operator
    stale_changed = Signal(bool)
    snapshot_received = Signal(object)  # Snapshot
    history_received = Signal(object)  # History
    jobs_received = Signal(object)  # list[Job]
    jobs_pruned = Signal(object)  # list[str]: ids of finished jobs the server no longer keeps
    audit_received = Signal(object)  # list[AuditEntry], oldest first
    log_page = Signal(str, object, bool)  # job id, JobLogPage, latest (the end: replaces what is shown)
    log_lines = Signal(str, object)  # job id, list[str]
    role_changed = Signal(str)  # the token's role ("viewer", "client", "operator", "admin"); "" when unknown
    queue_details = Signal(object)  # list[dict]: GET /v1/queues items (with `overrides`/`configured` if offered)
    job_created = Signal(object)  # Job: a job this dashboard submitted or retried
    action_done = Signal(str)  # what was done, in words
    action_failed = Signal(str, str)  # what was tried, why it failed
    instance_changed = Signal(str)  # the instance URL the connection now talks to (a cluster's failover)
    urls_learnt = Signal(object)  # tuple[str, ...]: the instance URLs the deployment reports (`spec.learnt_urls`)

    def __init__(
        self,
        spec: ConnectionSpec,
        token: str | None,
        *,
        client_factory: ClientFactory = default_client,
        clock: Callable[[], float] = time.monotonic,
        delays: Callable[[int], float] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.spec = spec
        self.urls = spec.instance_urls()
        self._token = token
        self._client_factory = client_factory
        self._clock = clock
        self._delay = delays or backoff_delays()
        self.state = LinkState.closed
        self.detail = ""
        self.stale = True
        self.last_snapshot: Snapshot | None = None
        self.role = ""  # from GET /v1/whoami; "" until known (or from a server without the route)
        self.token_name = ""
        # a cluster's instances this connection failed on (id -> its URL), from the last snapshot before the failure;
        # the deployment may list them as live until their liveness TTL runs out. Cleared when that URL answers again.
        self.not_answering: dict[str, str] = {}
        self._last_seen: float | None = None
        self._last_event_id: str | None = None
        self._client: AsyncClient | None = None
        self._main: asyncio.Task[None] | None = None
        self._log_task: asyncio.Task[None] | None = None
        self._actions: set[asyncio.Task[None]] = set()
        self._closing = False
        self._live_since = 0.0
        self.stale_after_s = STALE_AFTER_S
        self._background = False
        self._reader: asyncio.Task[None] | None = None  # the event stream being read (see `background`)
        self._last_read = -BACKGROUND_SNAPSHOT_S
        self._stale_timer = QTimer(self)
        self._stale_timer.setInterval(500)
        self._stale_timer.timeout.connect(self._check_stale)

    # ---------------------------------------------------------------- life

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def background(self) -> bool:
        """Out of focus: the event stream asks the server for a snapshot every BACKGROUND_SNAPSHOT_S, not all
        it makes. Changing it reopens the stream (from the last event id, so no job or audit event is lost)."""
        return self._background

    @background.setter
    def background(self, value: bool) -> None:
        if value != self._background:
            self._background = value
            if self._reader is not None:
                self._reader.cancel()  # cancelled, not broken out of: httpx's stream closes on this loop

    def data_age_s(self) -> float | None:
        """Seconds since the last snapshot arrived (None: never)."""
        return None if self._last_seen is None else self._clock() - self._last_seen

    def freshness(self) -> str:
        """How old the figures are, in words, for the page header and the connections list."""
        age = self.data_age_s()
        return "no data yet" if age is None else f"data {age:.0f} s old" if age >= 2 else "data fresh"

    @property
    def current_url(self) -> str:
        """The instance URL in use (the saved URL unless a cluster failed over to another instance)."""
        return self.urls.current

    def start(self) -> None:
        """Connect and keep connected until `close()`; needs a running asyncio (qasync) loop."""
        if self._main is not None and not self._main.done():
            return
        if not self._make_client():
            return
        self._main = asyncio.ensure_future(self._run())
        self._stale_timer.start()

    def _make_client(self) -> bool:
        """A client for the current URL (False, with the state `failed`, when none can be set up)."""
        try:
            self._client = self._client_factory(dataclasses.replace(self.spec, url=self.current_url), self._token)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a CA file missing or not a certificate
            self._set_state(LinkState.failed, f"cannot set up the connection: {exc}")
            return False
        return True

    async def _move_on(self) -> bool:
        """Fail over to the next instance URL: a new client for it (the old one closed); False if none."""
        old, self._client = self._client, None
        if old is not None:
            with contextlib.suppress(Exception):  # the instance is gone: closing may fail, it must not stop us
                await old.close()
        url = self.urls.advance()
        log.info("%s: moving to instance %s", self.spec.name, url)
        if not self._make_client():
            return False
        self.instance_changed.emit(url)
        return True

    def _note_not_answering(self, url: str) -> None:
        """Remember the instances the last snapshot lists at `url` (by id: a process restarted there is new)."""
        snap = self.last_snapshot
        for instance in snap.instances if snap is not None else ():
            if instance.url and instance.url.rstrip("/") == url.rstrip("/"):
                self.not_answering[instance.id] = url

    async def close(self) -> None:
        self._closing = True
        self._stale_timer.stop()
        tasks = [t for t in (self._main, self._log_task, *self._actions) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._set_state(LinkState.closed, "closed")

    def _set_state(self, state: LinkState, detail: str) -> None:
        if (state, detail) == (self.state, self.detail):
            return
        self.state, self.detail = state, detail
        log.info("%s: %s (%s)", self.spec.name, state.value, detail)
        self.state_changed.emit(state.value, detail)

    def _set_stale(self, stale: bool) -> None:
        if stale != self.stale:
            self.stale = stale
            self.stale_changed.emit(stale)

    def _check_stale(self) -> None:
        age = self.data_age_s()
        self._set_stale(age is None or age > self.stale_after_s or self.state is not LinkState.live)

    # ---------------------------------------------------------- the stream

    async def _run(self) -> None:
        """Connect, follow, and on a failure retry with backoff. With several instance URLs a drop is retried
        on the same instance first; an instance that does not answer is left for the next at once, and the
        backoff grows only after every URL failed in a row (one URL: every failure backs off, as always). A
        refused token ends the retrying once every URL in a row refused it (one URL: at the first refusal)."""
        attempt = 0
        misses = 0  # URLs that failed one after another since the last live session
        refusals = 0  # URLs that refused the token one after another
        while True:
            self._set_state(LinkState.connecting if attempt == 0 else LinkState.reconnecting, self.detail or "connecting")
            refused = False
            try:
                await self._session()
                reason = "the server ended the event stream"
            except AuthError as exc:
                refused, reason = True, f"the server refused the token: {exc}"
                if refusals + 1 >= len(self.urls):
                    self._set_state(LinkState.unauthorized, reason)
                    self._set_stale(True)
                    return
            except (ConnectionFailed, SlotDeckError, OSError) as exc:
                reason = str(exc) or exc.__class__.__name__
            except ValidationError as exc:
                reason = f"the answer does not look like a SlotDeck server's ({exc.errors()[0]['msg']})"
            except Exception as exc:  # a server answering nonsense must not end the retrying for good
                if self._closing:
                    return
                log.exception("%s: unexpected failure on the event stream", self.spec.name)
                reason = f"unexpected {exc.__class__.__name__}: {exc}"
            was_live = self.state is LinkState.live
            refusals = refusals + 1 if refused else 0
            if was_live and self._clock() - self._live_since >= STEADY_AFTER_S:
                attempt = 0  # only a session that stayed up a while resets the backoff
            self._set_stale(True)
            misses = 0 if was_live else misses + 1
            if misses and len(self.urls) > 1:
                failed = self.current_url
                self._note_not_answering(failed)
                if not await self._move_on():
                    return
                if misses % len(self.urls):  # another instance not yet tried in this round: at once
                    self._set_state(LinkState.reconnecting, f"{failed}: {reason}; trying {self.current_url}")
                    continue
            delay = self._delay(attempt)
            attempt += 1
            self._set_state(LinkState.reconnecting, f"{reason}; retrying in {delay:.0f} s")
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        client = self._require_client()
        await client.health()
        await self._learn_role(client)
        self.history_received.emit(await client.history(HISTORY_BACKFILL_S))
        await self._backfill_jobs(client)
        self.audit_received.emit(list(reversed(await client.audit(AUDIT_BACKFILL))))
        while await self._follow_events(client):
            pass

    async def _follow_events(self, client: AsyncClient) -> bool:
        """Read the event stream until it ends (False) or the connection goes in or out of focus (True: the
        caller reopens it, from the last event id, at the other snapshot pace). A first connect asks for every
        event the server still keeps: job and audit changes made while the backfill was read then arrive too,
        in order, so each job ends in its latest state."""
        self._reader = reader = asyncio.ensure_future(self._read_events(client))
        try:
            await asyncio.wait({reader})
        finally:
            self._reader = None
            if not reader.done():  # this task itself was cancelled (closing)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        if reader.cancelled():
            return True
        reader.result()  # the stream's failure, if it failed
        return False

    async def _read_events(self, client: AsyncClient) -> None:
        pace = BACKGROUND_SNAPSHOT_S if self._background else None
        async for event in client.events(self._last_event_id or REPLAY_KEPT, DRAWN_EVENTS, pace):
            if event.id:
                self._last_event_id = event.id
            self._dispatch(event.type, event.data)

    async def _learn_role(self, client: AsyncClient) -> None:
        who = await extra_calls.whoami(client)
        self.token_name = who["name"] if who else ""
        role = who["role"] if who else ""
        if role != self.role:
            self.role = role
            self.role_changed.emit(role)

    async def _backfill_jobs(self, client: AsyncClient) -> None:
        cursor: str | None = None
        for _ in range(JOBS_BACKFILL_PAGES):
            page = await client.jobs(limit=1000, cursor=cursor)
            if page.jobs:
                self.jobs_received.emit(page.jobs)
            cursor = page.next_cursor
            if cursor is None:
                return

    def _dispatch(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "snapshot":
            now = self._clock()
            if self.background and now - self._last_read < BACKGROUND_READ_MIN_S and self.state is LinkState.live:
                self._last_seen = now  # the figures are fresh; reading every one of ten servers' costs too much
                return
            self._last_read = now
            snap = Snapshot.model_validate(data)
            self.last_snapshot = snap
            self._last_seen = self._clock()
            if self.state is not LinkState.live:
                self._live_since = self._clock()
                self.not_answering = {i: u for i, u in self.not_answering.items() if u != self.current_url}
            on = f" via {self.current_url}" if len(self.urls) > 1 else ""
            self._set_state(LinkState.live, f"live{on}, {len(snap.queues)} queues")
            self._learn_urls(snap)
            self._set_stale(False)
            self.snapshot_received.emit(snap)
        elif kind == "job":
            self.jobs_received.emit([Job.model_validate(data["job"])])
        elif kind == "prune":
            self.jobs_pruned.emit([str(job_id) for job_id in data["jobs"]])
        elif kind == "audit":
            self.audit_received.emit([AuditEntry.model_validate(data)])

    def _learn_urls(self, snap: Snapshot) -> None:
        """Keep the instance URLs the deployment reports (for failover, and saved with the server)."""
        reported = reported_urls(snap)
        if reported and self.urls.learn(reported):
            self.spec = dataclasses.replace(self.spec, learnt_urls=self.urls.learnt)
            self.urls_learnt.emit(self.urls.learnt)

    def _require_client(self) -> AsyncClient:
        if self._client is None:
            raise ConnectionFailed(f"{self.spec.name} is not connected")
        return self._client

    # ----------------------------------------------------------- job logs

    def follow_log(self, job_id: str) -> None:
        """Show the last page of `job_id`'s log (`log_page`, latest), then stream what follows it (`log_lines`)
        until another job is chosen; "" stops."""
        if self._log_task is not None:
            self._log_task.cancel()
            self._log_task = None
        if job_id and self._client is not None:
            self._log_task = asyncio.ensure_future(self._follow(job_id))

    def load_earlier_log(self, job_id: str, before: int) -> None:
        """The page of `job_id`'s log that ends at log position `before` (`log_page`, not latest); following
        the end goes on meanwhile."""
        if self._client is None or not job_id:
            return
        client = self._client

        async def run() -> None:
            try:
                page = await client.job_log_page(job_id, before, LOG_PAGE_BYTES)
            except SlotDeckError as exc:
                self.action_failed.emit(f"read the log of {job_id}", str(exc))
                return
            self.log_page.emit(job_id, page, False)

        task = asyncio.ensure_future(run())
        self._actions.add(task)
        task.add_done_callback(self._actions.discard)

    async def _follow(self, job_id: str) -> None:
        client = self._require_client()
        batch = LineBatch(lambda lines: self.log_lines.emit(job_id, lines))
        try:
            page = await client.job_log_page(job_id, None, LOG_PAGE_BYTES)
            self.log_page.emit(job_id, page, True)
            async for line in client.follow_log(job_id, after=page.end):
                batch.add(line)
        except SlotDeckError as exc:
            batch.add(f"[log unavailable: {exc}]")
        except asyncio.CancelledError:
            batch.drop()  # another job was chosen (or the window closes): these lines are not wanted
            raise
        except Exception as exc:  # said in the pane, not lost as "Task exception was never retrieved"
            log.exception("%s: following the log of %s failed", self.spec.name, job_id)
            batch.add(f"[log unavailable: unexpected {exc.__class__.__name__}: {exc}]")
        batch.flush()

    # ------------------------------------------------------------ actions

    def _act(self, what: str, work: Callable[[AsyncClient], Awaitable[Any]], older: str = "") -> None:
        async def run() -> None:
            try:
                await work(self._require_client())
            except AuthError as exc:
                self.action_failed.emit(what, f"not allowed with this connection's token ({exc.title})")
            except SlotDeckError as exc:
                self.action_failed.emit(what, older if older and extra_calls.older_server(exc) else str(exc))
            except Exception as exc:  # reported, not left as "Task exception was never retrieved"
                log.exception("%s: %s failed unexpectedly", self.spec.name, what)
                self.action_failed.emit(what, f"unexpected {exc.__class__.__name__}: {exc}")
            else:
                self.action_done.emit(what)

        task = asyncio.ensure_future(run())
        self._actions.add(task)
        task.add_done_callback(self._actions.discard)

    def set_limit(self, queue: str, limit: int) -> None:
        self._act(f"set the limit of {queue} to {limit}", lambda c: c.set_limit(queue, limit))

    def pause(self, queue: str) -> None:
        self._act(f"pause {queue}", lambda c: c.pause(queue))

    def resume(self, queue: str) -> None:
        self._act(f"resume {queue}", lambda c: c.resume(queue))

    def reset_marks(self, queue: str) -> None:
        self._act(f"reset the high-water marks of {queue}", lambda c: c.reset_marks(queue))

    def cancel_job(self, job_id: str) -> None:
        self._act(f"cancel job {job_id}", lambda c: c.cancel_job(job_id))

    def cancel_waiter(self, waiter_id: str) -> None:
        self._act(f"cancel waiter {waiter_id}", lambda c: c.cancel_waiter(waiter_id))

    def revoke(self, lease_id: str) -> None:
        self._act(f"force-release lease {lease_id}", lambda c: c.revoke(lease_id))

    def submit_command(self, command: CommandSubmit) -> None:
        """Submit; the created job comes back as `job_created` (the jobs page selects it)."""
        fields = command.model_dump(exclude={"argv"})

        async def work(c: AsyncClient) -> None:
            job = await c.submit_command(command.argv, **fields)
            self.jobs_received.emit([job])
            self.job_created.emit(job)

        self._act(f"submit {' '.join(command.argv)}", work)

    def retry_job(self, job_id: str) -> None:
        """A new job with the same spec (POST /v1/jobs/{id}/retry); the new job comes back as `job_created`."""

        async def work(c: AsyncClient) -> None:
            job = await extra_calls.retry_job(c, job_id)
            self.jobs_received.emit([job])
            self.job_created.emit(job)

        self._act(f"retry job {job_id}", work, older="this server cannot retry jobs yet (it has no retry route)")

    def create_queue(self, name: str, fields: dict[str, Any]) -> None:
        self._act(f"create queue {name}", lambda c: c.configure_queue(name, **fields))

    def update_queue(self, name: str, fields: dict[str, Any]) -> None:
        """PATCH only the given fields (a None value clears an optional field)."""
        changes = ", ".join(f"{k} {v}" for k, v in fields.items())

        async def work(c: AsyncClient) -> None:
            await c.update_queue(name, **fields)
            await self._fetch_queue_details(c)

        self._act(f"change {name}: {changes}", work)

    def delete_queue(self, name: str, force: bool) -> None:
        self._act(f"delete queue {name}", lambda c: c.delete_queue(name, force=force))

    def reset_fields(self, name: str, fields: list[str]) -> None:
        async def work(c: AsyncClient) -> None:
            await extra_calls.reset_fields(c, name, fields)
            await self._fetch_queue_details(c)

        self._act(
            f"reset {', '.join(fields)} of {name} to configured",
            work,
            older="this server does not track operator overrides (no reset-fields route)",
        )

    def refresh_queue_details(self) -> None:
        """Fetch GET /v1/queues (overrides and configured values, where offered) into `queue_details`."""
        if self._client is None:
            return
        client = self._client

        async def run() -> None:
            try:
                await self._fetch_queue_details(client)
            except Exception as exc:  # a read for markers only: the snapshot still shows the queues
                log.info("%s: could not read the queue settings: %s", self.spec.name, exc)

        task = asyncio.ensure_future(run())
        self._actions.add(task)
        task.add_done_callback(self._actions.discard)

    async def _fetch_queue_details(self, client: AsyncClient) -> None:
        self.queue_details.emit(await extra_calls.queues_raw(client))
