"""What a redis-mode deployment looks like from one snapshot: its hosts, its instances, its GPUs by host and
its totals, as rows and sentences for the Cluster page and the fleet row.

A server that is not a cluster (in-process admission) lists no instances; every function here then answers
"nothing" (empty lists, `None`, ""). Fields a server does not fill yet (`Snapshot.hosts`, `InstanceInfo.url`,
`DeviceInfo.host`) are derived where they can be (hosts from the instances) and left blank otherwise.
Heartbeat ages are measured against the snapshot's own time (`Snapshot.at`, the server's clock), so a
dashboard whose clock is off still shows how long ago the deployment last heard from each process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont

from embedded_service.model import DeviceInfo, InstanceInfo, Snapshot

from .formats import format_duration
from .work import ByIdTable

STALE_BRUSH = QBrush(QColor(207, 34, 46, 60))  # a light red wash, readable on light and dark themes
NO_HOST = "(host not reported)"
GONE_KEPT_S = 120.0  # a process the deployment forgot stays listed as "gone" this long (snapshot time)


@dataclass(frozen=True)
class HostRow:
    """One host: its name (`id`), how many of its processes there are and how many are stale, its GPUs, its
    newest heartbeat (Unix s, None: unknown) and whether it is stale (every process on it is)."""

    id: str
    instances: int
    stale_instances: int
    gpus: int
    last_heartbeat: float | None
    stale: bool


@dataclass(frozen=True)
class ClusterTotals:
    """Sums over one snapshot: slots in use and limits of every queue, waiters, queues, processes and hosts."""

    in_use: int
    limit: int
    waiting: int
    queues: int
    paused: int
    instances: int
    stale_instances: int
    hosts: int
    stale_hosts: int
    gpus: int


def is_cluster(snap: Snapshot | None) -> bool:
    """Whether the snapshot comes from a redis-mode deployment (it lists processes or hosts)."""
    return snap is not None and bool(snap.instances or snap.hosts)


def host_rows(snap: Snapshot) -> list[HostRow]:
    """The deployment's hosts sorted by name: from `snap.hosts` when the server fills it, else grouped from the
    instances (a host is stale when all its processes are)."""
    gpus = {host: len(devices) for host, devices in gpus_by_host(snap)}
    stale_ids = {i.id for i in snap.instances if i.stale}
    if snap.hosts:
        return sorted(
            (
                HostRow(
                    id=h.host,
                    instances=len(h.instances),
                    stale_instances=sum(1 for i in h.instances if i in stale_ids),
                    gpus=gpus.get(h.host, 0),
                    last_heartbeat=h.last_heartbeat,
                    stale=h.stale,
                )
                for h in snap.hosts
            ),
            key=lambda row: row.id,
        )
    grouped: dict[str, list[InstanceInfo]] = {}
    for instance in snap.instances:
        grouped.setdefault(instance.host, []).append(instance)
    return [
        HostRow(
            id=host,
            instances=len(members),
            stale_instances=sum(1 for i in members if i.stale),
            gpus=gpus.get(host, 0),
            last_heartbeat=max((i.last_heartbeat for i in members if i.last_heartbeat is not None), default=None),
            stale=all(i.stale for i in members),
        )
        for host, members in sorted(grouped.items())
    ]


def gpus_by_host(snap: Snapshot) -> list[tuple[str, list[DeviceInfo]]]:
    """(host, its GPUs by index) for each host with GPUs, hosts sorted by name: a host's published devices
    (`ClusterHost.devices`), else the snapshot's devices by their `host` (NO_HOST when not said). Empty for a
    server that is not a cluster (its GPUs are on the Devices page)."""
    if not is_cluster(snap):
        return []
    grouped: dict[str, list[DeviceInfo]] = {h.host: list(h.devices) for h in snap.hosts if h.devices}
    for device in snap.devices:
        name = device.host or NO_HOST
        if not any(d.index == device.index for d in grouped.get(name, [])):  # not already published by its host
            grouped.setdefault(name, []).append(device)
    return [(host, sorted(devices, key=lambda d: d.index)) for host, devices in sorted(grouped.items()) if devices]


def cluster_totals(snap: Snapshot) -> ClusterTotals:
    hosts = host_rows(snap)
    return ClusterTotals(
        in_use=sum(q.in_use for q in snap.queues),
        limit=sum(q.config.limit for q in snap.queues),
        waiting=sum(q.waiting for q in snap.queues),
        queues=len(snap.queues),
        paused=sum(1 for q in snap.queues if q.config.paused),
        instances=len(snap.instances),
        stale_instances=sum(1 for i in snap.instances if i.stale),
        hosts=len(hosts),
        stale_hosts=sum(1 for h in hosts if h.stale),
        gpus=sum(len(devices) for _, devices in gpus_by_host(snap)),
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def totals_text(t: ClusterTotals) -> str:
    """The totals in one line, e.g. '3 hosts · 3 instances, 1 stale · 5 / 8 slots in use · 2 waiting in 2 queues'."""
    parts = [
        _plural(t.hosts, "host") + (f", {t.stale_hosts} stale" if t.stale_hosts else ""),
        _plural(t.instances, "instance") + (f", {t.stale_instances} stale" if t.stale_instances else ""),
        f"{t.in_use} / {t.limit} slots in use",
        f"{t.waiting} waiting in {_plural(t.queues, 'queue')}" + (f" ({t.paused} paused)" if t.paused else ""),
    ]
    if t.gpus:
        parts.append(_plural(t.gpus, "GPU"))
    return " · ".join(parts)


def cluster_summary(snap: Snapshot | None) -> str:
    """For the fleet row: 'cluster: 3 instances, 1 stale'; '' for a single server (or no data yet)."""
    if snap is None or not is_cluster(snap):
        return ""
    stale = sum(1 for i in snap.instances if i.stale)
    return f"cluster: {_plural(len(snap.instances), 'instance')}" + (f", {stale} stale" if stale else "")


def heartbeat_age(last_heartbeat: float | None, at: float) -> str:
    """'4.2s ago' as of the snapshot's time `at`; '' when unknown."""
    return "" if last_heartbeat is None else f"{format_duration(max(0.0, at - last_heartbeat))} ago"


def _same_url(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and str(a).rstrip("/") == str(b).rstrip("/")


class InstancesModel(ByIdTable[InstanceInfo]):
    """The deployment's processes: host, pid, version, URL, last heartbeat (age), stale, and which one this
    dashboard reads from ("connected"). A process the deployment stops listing (it forgets a dead one soon
    after marking it stale) stays GONE_KEPT_S longer, marked "gone", so that a death is not missed."""

    HOST, PID, VERSION, URL, HEARTBEAT, STATE = range(6)
    headers = ("Host", "PID", "Version", "URL", "Last heartbeat", "State")
    numeric = frozenset({PID, HEARTBEAT})

    def __init__(self, parent: Any = None) -> None:
        super().__init__(clock=lambda: self._at, parent=parent)
        self._at = 0.0
        self.current_url: str | None = None
        self.not_answering: frozenset[str] = frozenset()  # ids this dashboard's connection failed on
        self._gone: dict[str, float] = {}  # id -> snapshot time it was first missing

    def apply_snapshot(self, snap: Snapshot) -> None:
        self._at = snap.at
        listed = {i.id for i in snap.instances}
        for item in self._rows:
            if item.id not in listed:
                self._gone.setdefault(item.id, snap.at)
        self._gone = {i: t for i, t in self._gone.items() if i not in listed and snap.at - t < GONE_KEPT_S}
        kept = [item.model_copy(update={"stale": True}) for item in self._rows if item.id in self._gone]
        self._replace([*snap.instances, *kept])
        if self._rows:  # ages move on with each snapshot
            self.dataChanged.emit(self.index(0, self.HEARTBEAT), self.index(len(self._rows) - 1, self.HEARTBEAT))

    def set_current_url(self, url: str | None, not_answering: frozenset[str] = frozenset()) -> None:
        """The URL this dashboard reads from (that row is "connected"), and the ids of instances it failed on
        (a live one of those reads "did not answer this dashboard": the deployment lists a killed process as
        live until its liveness TTL runs out)."""
        self.current_url = url
        self.not_answering = not_answering
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, len(self.headers) - 1))

    def _display(self, item: InstanceInfo, column: int, now: float) -> str:
        if column == self.HEARTBEAT:
            return heartbeat_age(item.last_heartbeat, now)
        if column == self.STATE:
            if item.id in self._gone:
                return f"gone (no longer listed for {format_duration(now - self._gone[item.id])})"
            here = " · connected" if _same_url(item.url, self.current_url) else ""
            if not item.stale and not here and item.id in self.not_answering:
                here = " · did not answer this dashboard"
            return ("stale" if item.stale else "live") + here
        return super()._display(item, column, now)

    def _sort_value(self, item: InstanceInfo, column: int, now: float) -> Any:
        age = None if item.last_heartbeat is None else now - item.last_heartbeat
        return (item.host, item.pid, item.version or "", item.url or "", age, int(item.stale))[column]

    def _extra(self, item: InstanceInfo, role: int) -> Any:
        if role == Qt.ItemDataRole.BackgroundRole and item.stale:
            return STALE_BRUSH
        if role == Qt.ItemDataRole.FontRole and _same_url(item.url, self.current_url):
            font = QFont()
            font.setBold(True)
            return font
        return None


class HostsModel(ByIdTable[HostRow]):
    """The deployment's hosts: processes (stale ones), GPUs, newest heartbeat (age), stale."""

    HOST, INSTANCES, STALE_INSTANCES, GPUS, HEARTBEAT, STATE = range(6)
    headers = ("Host", "Instances", "Stale instances", "GPUs", "Last heartbeat", "State")
    numeric = frozenset({INSTANCES, STALE_INSTANCES, GPUS, HEARTBEAT})

    def __init__(self, parent: Any = None) -> None:
        super().__init__(clock=lambda: self._at, parent=parent)
        self._at = 0.0

    def apply_snapshot(self, snap: Snapshot) -> None:
        self._at = snap.at
        self._replace(host_rows(snap))
        if self._rows:
            self.dataChanged.emit(self.index(0, self.HEARTBEAT), self.index(len(self._rows) - 1, self.HEARTBEAT))

    def _display(self, item: HostRow, column: int, now: float) -> str:
        if column == self.HEARTBEAT:
            return heartbeat_age(item.last_heartbeat, now)
        if column == self.STALE_INSTANCES:
            return str(item.stale_instances) if item.stale_instances else ""
        if column == self.STATE:
            return "stale" if item.stale else "live"
        return super()._display(item, column, now)

    def _sort_value(self, item: HostRow, column: int, now: float) -> Any:
        age = None if item.last_heartbeat is None else now - item.last_heartbeat
        return (item.id, item.instances, item.stale_instances, item.gpus, age, int(item.stale))[column]

    def _extra(self, item: HostRow, role: int) -> Any:
        if role == Qt.ItemDataRole.BackgroundRole and item.stale:
            return STALE_BRUSH
        return None
