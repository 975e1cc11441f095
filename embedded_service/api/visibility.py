"""One visibility rule for every surface of the API.

What a role may not read through `GET`, it is not sent anywhere else either:
not on `/v1/events` (live or replayed), not in `/v1/snapshot`, `/v1/history`,
`/v1/audit` or `/metrics`.

- Job environment values are write-only for every role: names are shown, each
  value is replaced by `MASK`. The store keeps them (the job needs them), no
  answer, event or log line carries them.
- A `client` sees its own work: the jobs it submitted, the leases and waiters
  it made, the audit entries it caused or that touched its jobs. Others' work
  reaches it only as counts (queue statistics). Viewers, operators and admins
  see everything (values still masked).

`Audience` tags each published event with who may receive it, so a replay
(`Last-Event-ID`) is filtered exactly like the live stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..model import DeviceInfo, Job, Role, Snapshot
from .auth import Principal

MASK = "***"

OwnerOf = Callable[[str], str | None]  # remote lease/waiter id -> the token name that made it


def mask_env(env: dict[str, str]) -> dict[str, str]:
    """The variable names with every value masked."""
    return dict.fromkeys(env, MASK)


def masked(job: Job) -> Job:
    """The job as any role may see it: env values masked."""
    return job.model_copy(update={"env": mask_env(job.env)}) if job.env else job


def masked_fields(job: dict[str, Any]) -> dict[str, Any]:
    """A job's JSON form (as in `job` events) with env values masked."""
    env = job.get("env")
    return {**job, "env": mask_env(env)} if isinstance(env, dict) and env else job


def client_name(who: Principal) -> str | None:
    """The name a client's view is limited to; None for roles that see everyone's work."""
    return who.name if who.role is Role.client else None


@dataclass(frozen=True, slots=True)
class Audience:
    """Who receives an event: every non-client role when `staff`, and the clients named in `clients`."""

    staff: bool = True
    clients: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *names: str | None, staff: bool = True) -> Audience:
        return cls(staff, frozenset(n for n in names if n))

    def admits(self, client: str | None) -> bool:
        """Whether a subscriber receives it; `client` as from `client_name`."""
        return self.staff if client is None else client in self.clients


EVERYONE_BUT_CLIENTS = Audience()


def own_snapshot(snap: Snapshot, client: str, owner_of: OwnerOf) -> Snapshot:
    """The snapshot a client may see: its own leases and waiters; others' only as queue counts."""

    def mine(item_id: str, owner: str | None, job_id: str | None) -> bool:
        return owner_of(item_id) == client or (job_id is not None and owner == client)

    leases = [lease for lease in snap.leases if mine(lease.id, lease.owner, lease.job_id)]
    waiters = [w for w in snap.waiters if mine(w.id, w.owner, w.job_id)]
    own_ids = {lease.id for lease in leases}

    def own_devices(devices: list[DeviceInfo]) -> list[DeviceInfo]:
        return [d.model_copy(update={"leases": [i for i in d.leases if i in own_ids]}) for d in devices]

    hosts = [h.model_copy(update={"devices": own_devices(h.devices)}) for h in snap.hosts]
    return snap.model_copy(
        update={"leases": leases, "waiters": waiters, "devices": own_devices(snap.devices), "hosts": hosts}
    )


def visible_ids(ids: Iterable[str], owners: dict[str, str], client: str) -> list[str]:
    """Of `ids`, those whose known owner is `client`."""
    return [i for i in ids if owners.get(i) == client]
