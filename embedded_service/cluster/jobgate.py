"""Durable jobs beside redis mode: a host's job runner takes global slots from Redis.

``SlotService("redis://...", job_store="sqlite:///path")`` owns that SQLite file (the `stores.ownership` lock:
one owner per store, a second one is refused naming the first) and runs the ordinary `JobRunner` on it. The
bridge is two lines deep:

1. The service's own in-process `SlotEngine` keeps ordering this host's backlog, exactly as without Redis
   (priority, then submit order; bounded windows of engine waiters; cancel; drain; restart rules). Every queue
   of the deployment exists in that engine with the deployment's limit (`mirror`, from the cluster view), so
   at most `limit` of this host's jobs per queue are past the local line at once.
2. A job the local engine grants does not start yet: it waits in Redis for a global slot of its queue
   (`ClusterAdmission.acquire` with the job's priority and owner, no wait limit: a job waits as long as it
   takes) and is marked running in the store only once Redis granted it. Redis decides between hosts, and
   between jobs and every other acquirer of the deployment, under one limit, one line and one set of marks.

While a job runs, this process renews its `ClusterLease` in the background. When the lease is lost (expired
because renewals failed, revoked or cancelled by an operator, Redis data lost) the job is stopped as a revoked
in-process lease stops it: state `cancelled` (the loss is logged with its reason; noticed within
`LOST_POLL_S` of this process learning it). The global slot is given back once the work has stopped. Waiting
in Redis counts as `queued`: a job cancelled or drained then never started (no attempt counted), and an
operator's cancel of its Redis waiter cancels the job.

A ``kill -9`` of the owner: nothing renews its leases, so Redis takes its slots back `lease_ttl_s` after the
last renewal and drops its waiters after `proc_ttl_s`; the flock goes with the process. At the next start the
store's restart rules hold as in-process (queued jobs run; running ones are interrupted and re-queued while
attempts remain, their left-over processes stopped). A command job has its own process group, so it
outlives a killed owner: once its slot expired it runs outside the limit until the owner starts again and
stops it.

Only the jobs standing in Redis' line count in the deployment's `waiting`; the rest of a host's backlog is
listed by its own server. Not done: GPU requests of jobs (refused in redis mode: a job's GPUs would be
admitted against this host's devices only, beside the deployment's GPU holders); a job store shared by
several hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ..engine import SlotEngine
from ..jobs.execute import RunControl
from ..jobs.runner import JOB_WAIT_S  # a durable job never times out waiting for its slot, global ones included
from ..model import Job
from .slots import ClusterLease

if TYPE_CHECKING:
    from .admission import ClusterAdmission

log = logging.getLogger("slotdeck.jobs")

LOST_POLL_S = 0.2  # how often a running job's lease is checked for loss (the renewer marks it; this stops the job)


class ClusterJobGate:
    """The second admission a job's start needs in redis mode: the queue's global slot from Redis.

    `admission`: the service's `ClusterAdmission`; `engine`: its in-process engine, which orders this host's jobs
    and whose queues `mirror` keeps in step with the deployment's (every `admission.refresh_s` while started)."""

    def __init__(self, admission: ClusterAdmission, engine: SlotEngine) -> None:
        self.admission = admission
        self.engine = engine
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._mirroring: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Mirror the deployment's queues now and keep doing so in the background (after `admission.open()`)."""
        self.mirror()
        self._mirroring = asyncio.create_task(self._mirror_forever(), name="slotdeck-job-queues")

    async def close(self) -> None:
        """Stop mirroring (after the job runner closed: its jobs' slots are given back by then)."""
        if self._mirroring is not None:
            self._mirroring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mirroring
            self._mirroring = None

    def mirror(self) -> None:
        """Give every queue of the deployment (as last read, and those configured here) a local queue with its
        limit; a changed limit is followed. Local queues are never paused or rated: Redis decides that."""
        for name in self.admission.names():
            limit = self.admission.config(name).limit
            state = self.engine.queues.get(name)
            if state is None or state.config.limit != limit:
                self.engine.configure_queue(name, limit=limit)

    async def ready(self, queue: str) -> None:
        """Before a submit: make sure a queue another process created just now is known here (reads Redis once
        when it is not; the submit then raises UnknownQueue if the deployment has no such queue)."""
        self.mirror()
        if queue not in self.engine.queues:
            await self.admission.refresh()
            self.mirror()

    async def _mirror_forever(self) -> None:
        while True:
            await asyncio.sleep(self.admission.refresh_s)
            try:
                self.mirror()
            except Exception:  # a view being replaced, a bad value read: the next round tries again
                log.exception("following the deployment's queues failed; will retry")

    # --------------------------------------------------------------------- jobs

    async def enter(self, job: Job, control: RunControl) -> ClusterLease | None:
        """Wait in Redis for a global slot of `job`'s queue (its priority and owner); None when `control` was
        asked to stop first (then nothing is held). Raises what an acquire raises: SlotCancelled (an operator
        cancelled the wait), UnknownQueue (the deployment has no such queue), ValueError."""
        acquire = asyncio.ensure_future(
            self.admission.acquire(job.queue, owner=job.owner, priority=job.priority, timeout_s=JOB_WAIT_S)
        )
        stop = asyncio.ensure_future(control.event.wait())
        try:
            await asyncio.wait({acquire, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not acquire.done():
            acquire.cancel()  # the acquire leaves Redis' line (a grant that raced the cancel is given back)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await acquire
            return None
        lease = acquire.result()
        if control.reason is not None:  # granted just as it was stopped
            await self.admission.slots.release(lease)
            return None
        self._watchers[lease.id] = asyncio.create_task(self._watch(job, lease, control), name=f"slotdeck-lease-{job.id}")
        return lease

    async def leave(self, lease: ClusterLease) -> None:
        """The job's work has stopped: give its global slot back (retried in the background while Redis is away)."""
        watcher = self._watchers.pop(lease.id, None)
        if watcher is not None:
            watcher.cancel()
        await self.admission.slots.release(lease)

    async def _watch(self, job: Job, lease: ClusterLease, control: RunControl) -> None:
        while not lease.lost:
            await asyncio.sleep(LOST_POLL_S)
        log.warning("job %s: its global slot was lost (%s); stopping it", job.id, lease.lost_reason or "lost")
        control.request("cancelled")
