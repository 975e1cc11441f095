"""Admission on Redis behind a `SlotService` (``store="redis://host:port/db?namespace=name"``).

`ClusterAdmission` is what a service in redis mode calls instead of its in-process `SlotEngine`: acquire,
release, renew, revoke and cancel go to `ClusterSlots` (one limit, one line, one set of marks and totals for
every process on that Redis and namespace); queue changes go to Redis at once; and the service's views
(`snapshot()`, `queue_stats()`, `queue_configs()`) are built from a cluster view read from Redis by
`refresh()` (every `refresh_s` in the background, and before each HTTP read that shows queue figures).

Redis keeps a queue's limit, pause, max_waiting, rate, burst, default timeout, per_gpu and placement; the
other fields of a `QueueConfig` (stuck_after_s) are this process's own. GPU requests (`gpus`, `gpu_mem_mib`)
fit on this host's GPUs as its publisher announces them (`cluster.hosts`); the view lists every host.
Configuration from code or settings is published when the service starts, as a restart of an in-process
service applies it; an operator's live change of a field Redis keeps is recorded there and wins over code in
every process until `reset` (`cluster.overrides`: the in-process rule for the whole deployment). Errors: the
in-process engine's (`UnknownQueue`, `QueueFull`, `SlotTimeout`, `SlotCancelled`, `LeaseLost`); `StoreFault` from
`open()` for a Redis that is unreachable or unsafe (evicting, older than 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from .. import __version__
from ..errors import StoreFault, UnknownQueue
from ..model import ClusterHost, DeviceInfo, InstanceInfo, LeaseInfo, Marks, QueueConfig, QueueStats, Totals, WaiterInfo
from ..stores.faults import StoreHealth
from .hosts import read_hosts
from .overrides import REPUBLISH_TRIES, ClusterOverrides
from .slots import _NET_ERRORS, ClusterLease, ClusterSlots, RedisNotSafe, ResponseError
from .url import where

log = logging.getLogger("slotdeck.cluster")

CLUSTER_FIELDS = frozenset({"limit", "paused", "max_waiting", "rate", "burst", "timeout_s", "per_gpu", "placement"})
DETAIL_MAX = 1000  # holders and waiters shown per queue
UNREACHABLE = "redis unreachable"  # the store fault of a Redis that does not answer
PROC_TTL_S = 10.0  # ClusterSlots' default: a process without a heartbeat this long is stale


class ClusterView:
    """One reading of the whole deployment: figures per queue, holders and waiters (at most DETAIL_MAX each)."""

    __slots__ = ("hosts", "instances", "leases", "redis_time", "stats", "waiters")

    def __init__(self) -> None:
        self.stats: dict[str, QueueStats] = {}
        self.leases: list[LeaseInfo] = []
        self.waiters: list[WaiterInfo] = []
        self.instances: list[InstanceInfo] = []
        self.hosts: list[ClusterHost] = []
        self.redis_time = 0.0


class ClusterAdmission:
    """A `SlotService`'s admission on Redis. `url`: ``redis://`` or ``rediss://`` with ``?namespace=``;
    `refresh_s`: how often the cluster view is read in the background (seconds)."""

    def __init__(self, url: str, *, refresh_s: float = 0.5, **slots_options: Any) -> None:
        self.url = url
        self.slots = ClusterSlots(url, **slots_options)
        self.proc_ttl_s = float(slots_options.get("proc_ttl_s", PROC_TTL_S))
        self.refresh_s = refresh_s
        self.configs: dict[str, QueueConfig] = {}  # this process's full view of each queue's configuration
        self._code_paused: set[str] = set()  # queues whose `paused` code set explicitly (else Redis keeps its own)
        self.overrides = ClusterOverrides(self.slots)  # the deployment's operator changes, which win over code
        self.view = ClusterView()
        self.health = StoreHealth()  # whether the last reading of Redis went through (`/v1/health` shows it)
        self.version = 0
        self._last_key: str | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._refreshing: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.opened = False
        self.advertised_url: str | None = None  # the HTTP API this process serves, shown as `InstanceInfo.url`

    # ---------------------------------------------------------------- life cycle

    async def open(self) -> None:
        """Connect and check Redis, publish the configured queues, read the first view, refresh in the background.
        StoreFault (one line) for an unreachable or unsafe Redis."""
        try:
            await self.slots.open()
        except RedisNotSafe as exc:
            raise StoreFault("redis not safe", str(exc)) from None
        except _NET_ERRORS as exc:
            raise StoreFault(UNREACHABLE, f"{where(self.url)}: {exc}") from None
        except ResponseError as exc:  # e.g. a database number this Redis does not have, or no Sentinel there
            raise StoreFault("redis refused", f"{where(self.url)}: {exc}") from None
        self.opened = True
        await self._announce()
        for config in self.configs.values():
            await self._publish_code(config)
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever(), name="slotdeck-cluster-view")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self.opened:
            with contextlib.suppress(*_NET_ERRORS):
                await self.slots.client.hdel(self._instances_key, self.slots.proc_id)
            await self.slots.close()
            self.opened = False

    async def _announce(self) -> None:
        me = {"version": __version__, "proc_ttl_s": self.proc_ttl_s, "url": self.advertised_url}
        await self.slots.client.hset(self._instances_key, self.slots.proc_id, json.dumps(me))

    async def advertise(self, url: str) -> None:
        """Show `url` (the HTTP API this process serves) as this instance's `url` to the whole deployment."""
        self.advertised_url = url
        if self.opened:
            await self._announce()

    def host_devices(self) -> list[DeviceInfo] | None:
        """This host's GPUs as its publisher last announced them, with the deployment's reservations; None
        when the view has no such host."""
        mine = next((h for h in self.view.hosts if h.host == self.slots.host_id), None)
        return mine.devices if mine is not None else None

    @property
    def _instances_key(self) -> str:
        """Hash: process id -> {version, proc_ttl_s} of the SlotService processes (`InstanceInfo`)."""
        return f"{self.slots.prefix}:instances"

    # ------------------------------------------------------------------- queues

    def configure(self, config: QueueConfig, paused_given: bool) -> None:
        """A configured queue (code, settings): published now when open, else at `open()`."""
        self.configs[config.name] = config
        if paused_given:
            self._code_paused.add(config.name)
        if self.opened:
            task = asyncio.get_running_loop().create_task(self._publish_code(config))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _code_value(self, config: QueueConfig) -> bool | None:
        """`paused` as code set it, None where code left it to Redis (an operator's pause survives a start)."""
        return config.paused if config.name in self._code_paused else None

    async def _publish_code(self, config: QueueConfig) -> None:
        """Publish code's configuration of a queue, with the operator's value for every field an operator set;
        read again after, so an operator change that crossed this publish is not overwritten (bounded)."""
        kept = await self.overrides.coded(config, config.name in self._code_paused)
        for _ in range(REPUBLISH_TRIES):
            paused = kept["paused"] if "paused" in kept else self._code_value(config)
            await self._publish(config.model_copy(update=kept), paused)
            again = await self.overrides.values(config.name)
            if again == kept:
                return
            kept = again

    async def _publish(self, config: QueueConfig, paused: bool | None) -> None:
        """Set the queue's admission fields in Redis (`paused` None: keep Redis' own)."""
        await self.slots.configure_queue(
            config.name,
            limit=config.limit,
            max_waiting=config.max_waiting,
            paused=paused,
            rate=config.rate,
            burst=config.burst,
            timeout_s=config.timeout_s,
            per_gpu=config.per_gpu,
            placement=config.placement,
        )

    async def published(self) -> None:
        """Returns once the configurations published in the background reached Redis."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def config(self, name: str) -> QueueConfig:
        """The queue's configuration as the cluster view has it; UnknownQueue."""
        stats = self.view.stats.get(name)
        if stats is not None:
            return stats.config
        config = self.configs.get(name)
        if config is None:
            raise UnknownQueue(name)
        return config

    def has(self, name: str) -> bool:
        return name in self.view.stats or name in self.configs

    def names(self) -> list[str]:
        return list(dict.fromkeys([*self.view.stats, *self.configs]))

    async def update(self, name: str, proposed: QueueConfig, fields: dict[str, Any], by: str = "python") -> QueueConfig:
        """An operator's live change of `fields` (already merged into `proposed`), for the whole deployment;
        recorded first as an override by `by` (a token name) that wins over code until `reset`."""
        await self.published()
        await self.overrides.operator_set(name, fields, by, time.time())
        slots = self.slots
        if not self.has(name):  # a new queue (PUT): all of it at once
            await self._publish(proposed, proposed.paused)
            fields = {}
        if "limit" in fields:
            await slots.set_limit(name, proposed.limit)
        if "max_waiting" in fields:
            await slots.set_max_waiting(name, proposed.max_waiting)
        if {"rate", "burst", "timeout_s", "per_gpu", "placement"} & fields.keys():  # published with the others
            await self.refresh()
            admitted = {field: getattr(proposed, field) for field in fields if field in CLUSTER_FIELDS}
            await self._publish(self.config(name).model_copy(update=admitted), None)
        if "paused" in fields:
            await (slots.pause(name) if proposed.paused else slots.resume(name))
        local = {k: v for k, v in fields.items() if k not in CLUSTER_FIELDS}
        if local or name not in self.configs:
            base = self.configs.get(name, proposed)
            self.configs[name] = base.model_copy(update=local)
        await self.refresh()
        return self.config(name)

    async def reset(self, name: str, fields: list[str]) -> QueueConfig:
        """Give `fields` back to code/config: their overrides go and the configured values apply again (those
        Redis keeps as the deployment's code configured them, the others as this process's code did).
        ValueError for a name that is not a queue field; UnknownQueue."""
        if not self.has(name):
            await self.refresh()
        current = self.config(name)
        values = await self.overrides.reset_fields(name, fields)
        mine = self.configs.get(name) or QueueConfig(name=name)
        values.update({field: getattr(mine, field) for field in fields if field not in values})
        return await self.update(name, current.model_copy(update=values), values)

    # -------------------------------------------------------------------- slots

    @contextlib.asynccontextmanager
    async def slot(self, queue: str, **options: Any) -> AsyncIterator[ClusterLease]:
        """`async with svc.slot(...)` in redis mode (`options` as for `acquire`): a `ClusterLease` (renewed in the
        background; `lease.lost`; `lease.devices`, `lease.cuda_visible_devices` for GPUs of this host)."""
        lease = await self.acquire(queue, **options)
        try:
            yield lease
        finally:
            await asyncio.shield(self.slots.release(lease))

    async def acquire(
        self,
        queue: str,
        *,
        owner: str | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
        ttl_s: float | None = None,
        on_queued: Callable[[], object] | None = None,
        gpus: int = 0,
        gpu_mem_mib: int = 0,
        maker: str = "",
        waiter_id: str | None = None,
        **unsupported: Any,
    ) -> ClusterLease:
        """A held slot (see `ClusterSlots.acquire`); with `gpus`/`gpu_mem_mib`, GPUs of this host
        (NoFittingDevice at once when none of its published sets could ever hold them)."""
        if any(unsupported.values()):
            raise ValueError(f"not available in redis mode: {', '.join(sorted(k for k, v in unsupported.items() if v))}")
        await self.published()
        return await self.slots.acquire(
            queue,
            owner=owner or "",
            priority=priority,
            timeout_s=timeout_s,
            ttl_s=ttl_s,
            on_queued=on_queued,
            gpus=gpus,
            gpu_mem_mib=gpu_mem_mib,
            maker=maker,
            waiter_id=waiter_id,
        )

    # -------------------------------------------------------------------- views

    async def refresh(self, wait_s: float | None = None) -> None:
        """Read the cluster view now (a refresh already running is shared). StoreFault ("redis unreachable")
        when Redis does not answer: counted and logged once per spell by `health`, the last view stays.

        `wait_s` (seconds; for probes that must answer): return at once while Redis is known not to answer,
        and wait at most this long for the reading (a stuck Redis, its calls retried, takes half a minute);
        no answer by then counts as a failure (StoreFault), and the reading goes on in the background."""
        if wait_s is not None and self.health.failing is not None:
            return  # the background refresher finds out when Redis answers again
        running = self._refreshing
        if running is None or running.done():
            running = self._refreshing = asyncio.ensure_future(self._checked_read())
        if wait_s is None:
            await asyncio.shield(running)
            return
        try:
            await asyncio.wait_for(asyncio.shield(running), wait_s)
        except TimeoutError:
            self.health.failed(UNREACHABLE, TimeoutError(f"no answer within {wait_s:g} s"), "read")
            raise StoreFault(UNREACHABLE, f"{where(self.url)}: no answer within {wait_s:g} s") from None

    async def _checked_read(self) -> None:
        try:
            await self._read()
        except _NET_ERRORS as exc:
            self.health.failed(UNREACHABLE, exc, "read")
            raise StoreFault(UNREACHABLE, f"{where(self.url)}: {exc}") from None
        self.health.ok()

    async def _read(self) -> None:
        snap = await self.slots.snapshot()
        names = list(snap["queues"])
        details = await asyncio.gather(*(self.slots.detail(name, DETAIL_MAX) for name in names))
        view = ClusterView()
        view.redis_time = snap["redis_time"]
        for name, detail in zip(names, details, strict=True):
            q = snap["queues"][name]
            holders, waiters = detail["holders"], detail["waiters"]
            local = self.configs.get(name)
            # Redis keeps the admission fields; the others (and the default timeout shown) are this process's own
            shown = local.model_dump(exclude={"name", *CLUSTER_FIELDS - {"timeout_s"}}) if local is not None else {}
            fields = ("limit", "paused", "max_waiting", "rate", "burst", "per_gpu", "placement")
            config = QueueConfig.model_validate({**shown, "name": name, **{k: q[k] for k in fields}})
            owners = {h["owner"] for h in holders} | {w["owner"] for w in waiters}
            owners.discard("")
            t = q["totals"]
            view.stats[name] = QueueStats(
                config=config,
                in_use=q["in_use"],
                waiting=q["waiting"],
                owners=len(owners),
                marks=Marks(**q["marks"]),
                totals=Totals(
                    granted=t["granted"],
                    released=t["released"],
                    timed_out=t["timed_out"],
                    rejected=t["rejected"],
                    cancelled=t["cancelled"] + t["abandoned"],
                    expired=t["expired"],
                    revoked=t["revoked"],
                    bad_releases=t["bad_releases"],
                ),
            )
            view.leases += [
                LeaseInfo(
                    id=h["id"],
                    queue=name,
                    owner=h["owner"] or None,
                    fence=h["fence"],
                    granted_at=h["granted_at"] or h["expires_at"],
                    expires_at=h["expires_at"],
                    devices=h["devices"],
                    gpu_mem_mib=h["gpu_mem_mib"],
                    host=h["host"],
                )
                for h in holders
            ]
            view.waiters += [
                WaiterInfo(
                    id=w["id"],
                    queue=name,
                    owner=w["owner"] or None,
                    priority=w["priority"],
                    enqueued_at=w["enqueued_at"],
                    position=n,
                    gpus=w["gpus"],
                    gpu_mem_mib=w["gpu_mem_mib"],
                )
                for n, w in enumerate(waiters, start=1)
            ]
        view.instances = await self._read_instances(view.redis_time)
        view.hosts = await read_hosts(self.slots, view.instances, view.leases, self.proc_ttl_s)
        # hosts as admission sees them (their probes' live figures change every sample: not a new version)
        gpu_view = [
            (h.host, h.stale, [(d.index, d.health, d.memory_reserved_mib, d.leases) for d in h.devices]) for h in view.hosts
        ]
        await self.overrides.read()
        instances = [(i.id, i.stale, i.url) for i in view.instances]
        key = repr((snap["queues"], details, instances, gpu_view, self.overrides.records))
        if key != self._last_key:
            self._last_key = key
            self.version += 1
        self.view = view

    async def _read_instances(self, now: float) -> list[InstanceInfo]:
        """Every process with a heartbeat record (`<prefix>:procs`: id -> liveness deadline in ms), oldest
        deadline first; a SlotService's record beside it gives its version. Records of processes that left go."""
        client = self.slots.client
        procs: list[tuple[str, float]] = await client.zrange(f"{self.slots.prefix}:procs", 0, -1, withscores=True)  # type: ignore[assignment]
        records: dict[str, str] = await client.hgetall(self._instances_key)  # type: ignore[assignment]
        gone = [proc for proc in records if proc not in {p for p, _ in procs}]
        if gone:
            await client.hdel(self._instances_key, *gone)
        instances = []
        for proc, deadline_ms in procs:
            record = json.loads(records[proc]) if proc in records else {}
            host, _, rest = proc.partition(":")
            pid = rest.partition(":")[0]
            deadline = deadline_ms / 1000
            instances.append(
                InstanceInfo(
                    id=proc,
                    host=host,
                    pid=int(pid) if pid.isdigit() else None,
                    version=record.get("version"),
                    last_heartbeat=deadline - float(record.get("proc_ttl_s", PROC_TTL_S)),
                    stale=deadline < now,
                    url=record.get("url"),
                )
            )
        return instances

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except StoreFault:  # Redis away: `health` logged it once; the last view stays until it answers again
                pass
            except Exception as exc:
                log.warning("reading the cluster view failed: %s", exc)
