"""What one mounted API keeps besides the service: auth, the event broker, the
snapshot cache and metrics. Who holds which remote lease and the drain are the service's
(`embedded_service.remote`); this object shows them to the routes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..model import AuditEntry
from ..service import SlotService
from .auth import Authenticator, Principal
from .commands import CommandPolicy
from .events import EventBroker
from .guard import DEFAULT_MAX_BODY_BYTES
from .metrics import Metrics
from .snapshots import SnapshotCache
from .tokenwatch import TokenWatch
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
            owner_of=lambda item_id: service.remote.holders.get(item_id),
        )
        # redis mode: tokens are shared, so a change through another server must end this one's streams too
        shared = settings.auth and service.cluster is not None
        self.token_watch = TokenWatch(service.store, self.broker, self.auth) if shared else None

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

    # ----------------------------------------- remote holders and the drain (`service.remote`)

    @property
    def draining(self) -> bool:
        return self.service.remote.draining

    def check_admitting(self) -> None:
        self.service.remote.check_admitting()

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop admitting, end long-polls and streams, give running leases `grace_s` to finish, then revoke what
        remains (each logged) but the stored remote leases: those the next start takes back and counts."""
        if self.broker.closed:
            return
        first = self.service.remote.stop_admitting()  # False: another app mounted on this service began it
        if self.token_watch is not None:
            await self.token_watch.stop()
        await self.broker.close()
        if first:
            await self.service.remote.wind_down(self.settings.grace_s if grace_s is None else grace_s)
