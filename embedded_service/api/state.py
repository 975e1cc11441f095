"""What one mounted API keeps besides the service: auth, the event broker, the
snapshot cache, metrics, who holds which remote lease, and the drain switch."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ServerUnavailable
from ..model import AuditEntry
from ..service import SlotService
from .auth import Authenticator, Principal
from .commands import CommandPolicy
from .events import EventBroker
from .guard import DEFAULT_MAX_BODY_BYTES
from .metrics import Metrics
from .snapshots import SnapshotCache
from .visibility import Audience

log = logging.getLogger("slotdeck.api")


@dataclass(slots=True)
class ApiSettings:
    """Knobs of the HTTP layer (the service has its own)."""

    auth: bool = True
    snapshot_hz: float = 2.0
    max_poll_s: float = 30.0
    grace_s: float = 30.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # larger request bodies get 413 without being read
    commands: CommandPolicy = field(default_factory=CommandPolicy)  # which commands a client may submit


class ApiState:
    def __init__(self, service: SlotService, settings: ApiSettings) -> None:
        self.service = service
        self.settings = settings
        self.auth = Authenticator(service.store, enabled=settings.auth)
        self.snapshots = SnapshotCache(service)
        self.metrics = Metrics(self.snapshots)
        self.broker = EventBroker(
            service,
            self.snapshots,
            settings.snapshot_hz,
            observers=[self.metrics.observe],
            owner_of=lambda item_id: self.holders.get(item_id),
        )
        self.holders: dict[str, str] = {}  # remote lease or waiter id -> token name that made it
        self.draining = False
        self.hurry = False  # a second signal: stop waiting for running work
        self.stopping = asyncio.Event()

    # ---------------------------------------------------------------- audit

    async def audit(
        self, who: Principal, action: str, target: str, before: Any = None, after: Any = None, owner: str | None = None
    ) -> None:
        """Record an action in the store and on the event stream (never a secret in `before`/`after`).

        A client receives the event when it is the actor or `owner` (the owner of the job acted on)."""
        entry = await self.service.store.add_audit(
            AuditEntry(at=time.time(), actor=who.name, action=action, target=target, before=before, after=after)
        )
        log.info("audit %s %s by %s", action, target, who.name, extra={"slotdeck": {"event": "audit", "action": action}})
        self.broker.publish("audit", entry.model_dump(mode="json"), Audience.of(who.name, owner))

    # ------------------------------------------------------------ ownership

    def remember(self, item_id: str, who: Principal) -> None:
        self.holders[item_id] = who.name
        if len(self.holders) > 4 * (len(self.service.engine.leases) + len(self.service.engine.waiters)) + 1024:
            self._prune()

    def _prune(self) -> None:
        engine = self.service.engine
        self.holders = {k: v for k, v in self.holders.items() if k in engine.leases or k in engine.waiters}

    def owns(self, item_id: str, who: Principal) -> bool:
        """Whether a client token made this lease/waiter (operators act on any)."""
        holder = self.holders.get(item_id)
        if holder is None:  # a remote lease taken back after a restart
            holder = self.service.keeper.holders.get(item_id)
        return holder == who.name

    def check_admitting(self) -> None:
        if self.draining:
            raise ServerUnavailable("this server is draining for a restart and admits no new work; retry shortly", 5)

    # ---------------------------------------------------------------- drain

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop admitting, end long-polls and streams, give running leases `grace_s` to finish, then revoke what
        remains (each logged) but the stored remote leases: those the next start takes back and counts."""
        if self.draining:
            return
        grace = self.settings.grace_s if grace_s is None else grace_s
        self.draining = True
        self.stopping.set()
        self.service.jobs.hold_queued()  # from now on no queued job starts; running ones get the grace period
        engine = self.service.engine
        for waiter_id in [w for w in self.holders if w in engine.waiters]:
            engine.cancel(waiter_id)
        await self.broker.close()
        deadline = time.monotonic() + grace
        running = set(engine.leases)  # the work running now gets the grace period, nothing admitted later
        if running:
            log.info("draining: waiting up to %.0fs for %d running lease(s)", grace, len(running))
        while running & engine.leases.keys() and time.monotonic() < deadline and not self.hurry:
            await asyncio.sleep(0.05)
        restored = self.service.keeper.holders  # remote leases taken back after a restart are remote too
        kept = 0
        for lease_id in [lease_id for lease_id in engine.leases if lease_id in self.holders or lease_id in restored]:
            lease = engine.leases[lease_id]
            if lease.ttl_s is not None and lease.expires_at is not None:
                # stored: its holder hears nothing until its next renew and may still be working, so the next
                # start takes it back and counts it (as after kill -9); revoking it would free the slot too early
                log.warning("kept for the next start queue=%s owner=%s lease=%s", lease.queue, lease.owner, lease.id)
                kept += 1
                continue
            log.warning("revoked at shutdown queue=%s owner=%s lease=%s", lease.queue, lease.owner, lease.id)
            engine.revoke(lease_id)
        if len(engine.leases) > kept:
            log.warning(
                "shutting down with %d running job lease(s): they are stopped and queued again for the next start",
                len(engine.leases) - kept,
            )
