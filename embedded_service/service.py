"""`SlotService`: the engine wired to a store, probes and a 1 Hz sampler.

This is the public Python API. The engine decides; this object persists what
must survive a restart, samples the host and GPUs without blocking the loop,
and keeps the history ring that graphs backfill from.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cluster.url import is_cluster_url
from .engine import Clock, HistoryRing, Lease, RealClock, Sample, SlotEngine
from .engine.devices import DEFAULT_STALE_AFTER_S, DevicePool
from .engine.history import DEFAULT_HISTORY_POINTS
from .engine.visible import DeviceSelection
from .errors import NotInRedisMode, StoreFault, UnknownQueue
from .jobs import JobRunner, JobSettings
from .model import (
    DeviceSpec,
    History,
    HostInfo,
    Job,
    JobLogPage,
    JobPage,
    JobState,
    LogPart,
    Marks,
    QueueConfig,
    QueueStats,
    Snapshot,
    Totals,
)
from .overrides import PYTHON_ACTOR, OverrideBook, check_fields
from .probes.base import GpuProbe, HostProbe
from .remote import RemoteDesk
from .restart import RestartKeeper
from .stores import Store, open_store
from .stores.ownership import StoreLock, take_ownership

if TYPE_CHECKING:
    from .cluster.admission import ClusterAdmission
    from .cluster.desk import ClusterDesk
    from .cluster.history import ClusterHistory
    from .cluster.hosts import HostGpus
    from .cluster.jobgate import ClusterJobGate

log = logging.getLogger("slotdeck.service")

Listener = Callable[[str, dict[str, Any]], None]  # (event, JSON-ready fields)


def proposed_config(current: QueueConfig, fields: dict[str, Any]) -> QueueConfig:
    """`current` with `fields` changed, validated as the engine would (ValidationError for a bad value)."""
    return QueueConfig.model_validate({**current.model_dump(), **fields})


class _SlotContext:
    """`async with svc.slot(...)`: a class, not a generator, to keep the uncontended path cheap."""

    __slots__ = ("_engine", "_kwargs", "_queue", "lease")

    def __init__(self, engine: SlotEngine, queue: str, kwargs: dict[str, Any]) -> None:
        self._engine = engine
        self._queue = queue
        self._kwargs = kwargs
        self.lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        # the engine's acquire() inlined: one coroutine less per wait is a few percent of hand-off throughput
        engine = self._engine
        result = engine.enqueue(self._queue, **self._kwargs)
        if isinstance(result, Lease):
            lease = result
        else:
            try:
                lease = await result.future
            except asyncio.CancelledError:
                engine.wait_cancelled(result)
                raise
        task = asyncio.current_task()
        if task is not None:
            lease.on_cancel = task.cancel
        self.lease = lease
        return lease

    async def __aexit__(self, *exc: object) -> None:
        lease = self.lease
        if lease is not None:
            self.lease = None
            self._engine.release(lease.id)


class SlotService:
    """Named queues with slots, priority waiting, leases, GPUs and history.

    `store` is a URL (`memory://`, `sqlite:///path`, ...) or a `Store`. `clock` is for tests.
    `redis://host:port/db?namespace=name` (or `rediss://`) is redis mode: every process on that Redis and
    namespace is one admission domain (`cluster.admission`): one limit, one line, one set of marks and totals;
    `snapshot()` shows the whole deployment (`instances`, `hosts`). `slot()`/`acquire()` then give a
    `ClusterLease` (renewed in the background; `lease.lost`). Tokens and audit are shared through Redis by
    every server of the deployment (`cluster.access`). GPUs are per host (`cluster.hosts`): this service
    publishes its probe's figures or its `devices` for its host id (`SLOTDECK_HOST_ID`, else the hostname; one
    publisher per host is elected), and `gpus`/`gpu_mem_mib` requests fit on this host's GPUs with the same
    caps, memory rule and reservation rule as in-process, across every process of the host. Jobs in redis mode
    need `job_store` (a store URL such as `sqlite:///path`, or a `Store`): this service then owns it (one owner
    per store, `StoreLocked` for a second) and runs its jobs, each only while it holds a global slot of its
    queue (`cluster.jobgate`; jobs asking for GPUs are refused). Without it jobs are off (`NotInRedisMode`):
    several web workers embedding one service on Redis take slots without owning a job store.
    `cluster_lease_ttl_s` (redis mode): how long after its process stops renewing a slot comes back (default 30).
    Probes are optional: without a GPU probe, `devices` from configuration are
    used as they are. Jobs keep their logs in `log_dir` (default: next to the
    SQLite file, a temp dir for memory://); `jobs` tunes the job runner.

    GPUs: `visible_gpus` ("0,2" or UUIDs, as CUDA_VISIBLE_DEVICES reads them)
    restricts which GPUs are handed out; None takes this process's
    `CUDA_VISIBLE_DEVICES` when it is set, else all GPUs. A failed reading keeps
    the last good figures for `gpu_stale_after_s`. `gpu_memory_budget_mib` is
    what a device of unknown size (unified memory) may promise; without it such
    devices refuse memory requests. See `engine.devices` for the memory rule.
    """

    def __init__(
        self,
        store: str | Store = "memory://",
        *,
        devices: list[DeviceSpec] | None = None,
        clock: Clock | None = None,
        gpu_probe: GpuProbe | None = None,
        host_probe: HostProbe | None = None,
        sample_interval_s: float = 1.0,
        history_points: int = DEFAULT_HISTORY_POINTS,
        log_dir: str | Path | None = None,
        jobs: JobSettings | None = None,
        visible_gpus: str | None = None,
        gpu_memory_budget_mib: int | None = None,
        gpu_stale_after_s: float = DEFAULT_STALE_AFTER_S,
        job_store: str | Store | None = None,
        cluster_lease_ttl_s: float | None = None,
    ) -> None:
        self.clock = clock or RealClock()
        pool = DevicePool(
            stale_after_s=gpu_stale_after_s,
            memory_budget_mib=gpu_memory_budget_mib,
            selection=gpu_selection(visible_gpus),
        )
        self.engine = SlotEngine(self.clock, devices, pool)
        self.cluster: ClusterAdmission | None = None
        self.host_gpus: HostGpus | None = None  # redis mode: this host's GPUs, published after each sample
        if isinstance(store, str) and is_cluster_url(store):
            from .cluster.access import shared_access
            from .cluster.admission import ClusterAdmission  # needs the redis extra
            from .cluster.hosts import HostGpus

            options = {} if cluster_lease_ttl_s is None else {"lease_ttl_s": cluster_lease_ttl_s}
            self.cluster = ClusterAdmission(store, **options)  # ValueError for a bad namespace or host id
            if gpu_probe is not None or devices:
                self.host_gpus = HostGpus(self.cluster.slots, pool, self.clock.time, sample_interval_s)
            # jobs in the job store this process owns (else none); tokens and audit in Redis, one trail for all
            local = job_store or "memory://"
            local = open_store(local) if isinstance(local, str) else local
            self.store: Store = shared_access(store, local)
        elif job_store is not None or cluster_lease_ttl_s is not None:
            raise ValueError("job_store and cluster_lease_ttl_s are for redis mode; in-process the store keeps the jobs")
        else:
            self.store = open_store(store) if isinstance(store, str) else store
        self.gpu_probe = gpu_probe
        self.host_probe = host_probe
        self.sample_interval_s = sample_interval_s
        self.history_ring = HistoryRing(history_points)
        self.cluster_history: ClusterHistory | None = None  # redis mode: the deployment's, read from Redis
        if self.cluster is not None:
            from .cluster.history import ClusterHistory

            self.cluster_history = ClusterHistory(self.cluster, history_points)
        self.host: HostInfo | None = None
        self.gpu_probe_reason: str | None = None if gpu_probe else "no GPU probe configured"
        self.started_at: float | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._pending_saves: set[asyncio.Task[None]] = set()
        self._unsaved_queues: set[str] = set()
        self.ownership: StoreLock | None = None  # this process's lock on a file store, held from start to close
        self._config_lock = asyncio.Lock()
        # redis mode: the deployment's overrides, recorded in Redis (cluster.overrides)
        self.overrides: OverrideBook = self.cluster.overrides if self.cluster is not None else OverrideBook()
        self.keeper = RestartKeeper(self.engine, self.store, self.clock)
        self._watchers: list[Listener] = []  # events() subscribers; the engine's events reach them via publish()
        self.job_gate: ClusterJobGate | None = None
        if self.cluster is not None and job_store is not None:
            from .cluster.jobgate import ClusterJobGate

            self.job_gate = ClusterJobGate(self.cluster, self.engine)
        self.jobs = self._make_job_runner(log_dir, jobs)
        # remote holders and waiters (the HTTP API's), and the drain
        self.remote: RemoteDesk | ClusterDesk = RemoteDesk(self) if self.cluster is None else self._cluster_desk()

    def _cluster_desk(self) -> ClusterDesk:
        from .cluster.desk import ClusterDesk

        assert self.cluster is not None
        return ClusterDesk(self.cluster, self.jobs if self.job_gate is not None else None)

    @property
    def store_url(self) -> str:
        """Where admission state lives: the Redis URL in redis mode, else the store's."""
        return self.cluster.url if self.cluster is not None else self.store.url

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> SlotService:
        """Own the store (raises `StoreLocked` naming the owner if another process does), open it, recover, run.

        Redis mode: connect and join the deployment (`StoreFault` for an unreachable or unsafe Redis); with a
        job store, own it as above and run its jobs."""
        if self.cluster is not None:
            if self.job_gate is not None:
                self.ownership = take_ownership(self.store)
            try:
                await self.store.open()
                try:
                    await self.cluster.open()
                except BaseException:
                    await self.store.close()
                    raise
            except BaseException:
                self._release_ownership()
                raise
            self.started_at = self.clock.time()
            if self.job_gate is not None:
                self.job_gate.start()
                await self.jobs.start()
            await self.sample_once()
            if self.host_gpus is not None:
                await self.cluster.refresh()  # this host's GPUs, published just now, in the first snapshot
            self._sampler = asyncio.create_task(self._sample_forever(), name="slotdeck-sampler")
            return self
        self.ownership = take_ownership(self.store)
        try:
            await self.store.open()
        except BaseException:
            self._release_ownership()
            raise
        await self._load_queues()
        for name, (marks, totals) in (await self.store.load_queue_state()).items():
            state = self.engine.queues.get(name)
            if state is not None:
                state.marks = marks
                state.restore_totals(totals)
        # together: the store's writer commits a burst in a few transactions (10,000 queues start in seconds)
        await asyncio.gather(*(self._save_queue(name) for name in list(self._unsaved_queues)))
        await self.keeper.restore()
        self.started_at = self.clock.time()
        await self.jobs.start()
        await self.sample_once()
        self._sampler = asyncio.create_task(self._sample_forever(), name="slotdeck-sampler")
        return self

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self.cluster is not None:
            if self.job_gate is not None:
                await self.jobs.close()  # before Redis closes: its jobs' global slots go back first
                await self.job_gate.close()
            if self.host_gpus is not None:
                await self.host_gpus.stop()
            assert self.cluster_history is not None
            with contextlib.suppress(Exception):  # best effort: else another takes over when its lead expires
                await self.cluster_history.resign()
            await self.cluster.close()
            await self.store.close()
            self._release_ownership()
            return
        await self.jobs.close()
        if self._pending_saves:
            await asyncio.gather(*self._pending_saves, return_exceptions=True)
        try:
            await self.keeper.close()
        except StoreFault as fault:
            log.error("closing: marks and totals not saved: %s", fault)
        await self.store.close()
        self._release_ownership()

    def _release_ownership(self) -> None:
        if self.ownership is not None:
            self.ownership.release()
            self.ownership = None

    async def __aenter__(self) -> SlotService:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- queues

    def configure_queue(self, name: str, **fields: Any) -> QueueConfig:
        """Create a queue or set its *configured* values (code/config); saved to the store in the background.

        A field an operator changed live keeps the operator's value until reset (`reset_fields`)."""
        QueueConfig.model_validate({"name": name, **fields})  # a bad value changes nothing
        if self.cluster is not None:
            known = self.cluster.configs.get(name)
            config = proposed_config(known or QueueConfig(name=name), fields)
            self.cluster.configure(config, paused_given="paused" in fields)
            return config
        config = self.engine.configure_queue(name, **self.overrides.code(name, fields))
        self._save_soon(name)
        return config

    async def _load_queues(self) -> None:
        """At start: stored queues, with configured values from code where it set them and operator overrides."""
        saved = await self.store.load_overrides()
        for config in await self.store.load_queues():
            fields = self.overrides.loaded(config.name, config, saved.get(config.name))
            if fields or config.name not in self.engine.queues:
                self.engine.configure_queue(config.name, **fields)
                self._unsaved_queues.add(config.name)

    async def _store_then_apply(self, name: str, fields: dict[str, Any], note: Callable[[], object]) -> QueueConfig:
        """Store a live change of queue `name` (its config and, after `note` updated the override book, its
        overrides), then apply `fields` to the engine. Stored first: a change the store refuses (`StoreFault`:
        disk full, ...) is not applied, and the override book is put back as it was."""
        async with self._config_lock:  # one change at a time, so the store and the engine agree on the last one
            if self._pending_saves:  # a background save of an older config must not land after this one
                await asyncio.gather(*self._pending_saves, return_exceptions=True)
            state = self.engine.queues.get(name)
            proposed = proposed_config(state.config if state is not None else QueueConfig(name=name), fields)
            before = self.overrides.records.get(name)
            before = before.model_copy(deep=True) if before is not None else None
            note()
            try:
                await self.store.save_queue(proposed)
                record = self.overrides.records.get(name)
                if record is not None:
                    await self.store.save_overrides(name, record)
            except BaseException:
                if before is None:
                    self.overrides.records.pop(name, None)
                else:
                    self.overrides.records[name] = before
                raise
            self._unsaved_queues.discard(name)
            return self.engine.configure_queue(name, **fields)

    async def update_queue(self, name: str, actor: str | None = None, **fields: Any) -> QueueConfig:
        """Change an existing queue live and return once the change is stored (not applied if the store refuses it).

        A live change is an operator override of those fields (by `actor`, a token name; "python" when
        None): it survives restarts and wins over `configure_queue` until `reset_fields`. In redis mode it
        holds for the whole deployment at once, recorded in Redis (fields Redis does not keep: this process's)."""
        if self.cluster is not None:
            if not self.cluster.has(name):
                await self.cluster.refresh()  # made by another process since the last reading?
            config = proposed_config(self.cluster.config(name), fields)
            return await self.cluster.update(name, config, fields, actor or PYTHON_ACTOR)
        self.engine.queue(name)
        by, at = actor or PYTHON_ACTOR, self.clock.time()
        return await self._store_then_apply(name, fields, lambda: self.overrides.operator(name, fields, by, at))

    async def replace_queue(self, name: str, actor: str | None = None, **fields: Any) -> QueueConfig:
        """Create a queue or replace its whole configuration live (fields left out take their defaults)."""
        full = QueueConfig(name=name, **fields).model_dump(exclude={"name"})
        if self.cluster is not None:
            return await self.cluster.update(name, QueueConfig(name=name, **full), full, actor or PYTHON_ACTOR)
        by, at = actor or PYTHON_ACTOR, self.clock.time()
        return await self._store_then_apply(name, full, lambda: self.overrides.operator(name, full, by, at))

    async def reset_fields(self, name: str, fields: list[str]) -> QueueConfig:
        """Give `fields` back to code/config: their configured values apply again and the overrides go.

        ValueError for a name that is not a queue field; UnknownQueue."""
        if self.cluster is not None:
            check_fields(fields)
            return await self.cluster.reset(name, fields)
        self.engine.queue(name)
        check_fields(fields)
        record = self.overrides.record(name)
        values = {field: record.configured.get(field) for field in fields}
        return await self._store_then_apply(name, values, lambda: self.overrides.reset(name, fields))

    async def set_limit(self, name: str, limit: int) -> QueueConfig:
        return await self.update_queue(name, limit=limit)

    async def pause(self, name: str) -> QueueConfig:
        return await self.update_queue(name, paused=True)

    async def resume(self, name: str) -> QueueConfig:
        return await self.update_queue(name, paused=False)

    async def delete_queue(self, name: str, force: bool = False) -> None:
        """Delete a queue (one with holders or waiters needs `force`); deleted from the store first, so a
        deletion the store refuses (`StoreFault`) leaves the queue as it was."""
        self._not_in_redis_mode("deleting a queue")
        state = self.engine.queue(name)
        if (state.in_use or state.waiting) and not force:
            self.engine.delete_queue(name, force=False)  # raises QueueBusy with the engine's own message
        await self.store.delete_queue(name)
        self.engine.delete_queue(name, force=force)
        self._unsaved_queues.discard(name)
        self.overrides.forget(name)
        self.keeper.forget_queue(name)
        await self.store.save_overrides(name, None)

    async def reset_marks(self, name: str) -> None:
        self._not_in_redis_mode("resetting marks")
        self.engine.reset_marks(name)
        await self.keeper.sync()

    def queue_config(self, name: str) -> QueueConfig:
        """UnknownQueue."""
        if self.cluster is not None:
            return self.cluster.config(name)
        return self.engine.queue(name).config

    def has_queue(self, name: str) -> bool:
        if self.cluster is not None:
            return self.cluster.has(name)
        return name in self.engine.queues

    def queue_configs(self) -> list[QueueConfig]:
        """Every queue's configuration, in creation order (redis mode: as last read, see `refresh`)."""
        if self.cluster is not None:
            return [self.cluster.config(name) for name in self.cluster.names()]
        return [state.config for state in self.engine.queues.values()]

    def queue_stats(self, name: str) -> QueueStats:
        """One queue's live figures, built for it alone (not a whole snapshot); UnknownQueue."""
        if self.cluster is not None:
            return self._cluster_stats(name)
        return self.engine.queue_stats(self.engine.queue(name), self.clock.time())

    def _cluster_stats(self, name: str) -> QueueStats:
        assert self.cluster is not None
        stats = self.cluster.view.stats.get(name)
        if stats is not None:
            return stats
        config = self.cluster.configs.get(name)  # configured here, not read back from Redis yet
        if config is None:
            raise UnknownQueue(name)
        return QueueStats(config=config, in_use=0, waiting=0, owners=0, marks=Marks(), totals=Totals())

    async def refresh(self, wait_s: float | None = None) -> None:
        """Redis mode: read the deployment's figures now (views show the last reading, taken every 0.5 s);
        `StoreFault` when Redis does not answer. `wait_s` (seconds): wait at most this long, and not at all
        while Redis is known not to answer (see `ClusterAdmission.refresh`). In-process the views are always
        current: nothing to do."""
        if self.cluster is not None:
            await self.cluster.refresh(wait_s)

    def _not_in_redis_mode(self, what: str) -> None:
        if self.cluster is not None:
            raise NotInRedisMode(f"{what} is not available in redis mode")

    def _save_soon(self, name: str) -> None:
        self._unsaved_queues.add(name)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not started yet: start() saves it
        if self.started_at is None:
            return
        task = loop.create_task(self._save_queue(name))
        self._pending_saves.add(task)
        task.add_done_callback(self._pending_saves.discard)

    async def _save_queue(self, name: str) -> None:
        self._unsaved_queues.discard(name)
        state = self.engine.queues.get(name)
        if state is not None:
            await self.store.save_queue(state.config)
            record = self.overrides.records.get(name)
            if record is not None:
                await self.store.save_overrides(name, record)

    async def save_queue_state(self, names: list[str] | None = None) -> None:
        """Persist the marks and totals of the queues that changed since their last save (what the sample tick
        does: totals reserved ahead while they move, see restart.py). `names` is accepted for compatibility;
        changed queues are found."""
        await self.keeper.sync()

    # ----------------------------------------------------------------- slots

    def slot(self, queue: str, **kwargs: Any) -> Any:
        """`async with svc.slot("chat", owner=..., priority=0, timeout_s=..., gpus=..., gpu_mem_mib=...) as lease`.

        An in-process `Lease`; in redis mode a `ClusterLease` (`lease.id`, `lease.fence`, `lease.lost`)."""
        if self.cluster is not None:
            return self.cluster.slot(queue, **kwargs)
        return _SlotContext(self.engine, queue, kwargs)

    async def acquire(self, queue: str, **kwargs: Any) -> Any:
        """A held slot: a `Lease`, in redis mode a `ClusterLease` (give it back with `release`)."""
        if self.cluster is not None:
            return await self.cluster.acquire(queue, **kwargs)
        return await self.engine.acquire(queue, **kwargs)

    def release(self, lease: Any, owner: str | None = None) -> bool:
        """Give a slot back; False when it was not held. Redis mode: a `ClusterLease` from `acquire`, given back
        in the background (retried until Redis has it, see `ClusterSlots.release`)."""
        if self.cluster is not None:
            if isinstance(lease, str):
                raise NotInRedisMode("in redis mode release the lease object acquire() returned")
            return self.cluster.slots.release_soon(lease)
        return self.engine.release(lease if isinstance(lease, str) else lease.id, owner)

    def renew(self, lease: Lease | str, ttl_s: float | None = None) -> Lease:
        self._not_in_redis_mode("renew() (leases renew in the background)")
        return self.engine.renew(lease if isinstance(lease, str) else lease.id, ttl_s)

    def revoke(self, lease_id: str) -> bool:
        self._not_in_redis_mode("revoke() from Python (use the HTTP route or svc.cluster.slots.revoke)")
        return self.engine.revoke(lease_id)

    def cancel(self, item_id: str) -> bool:
        """Cancel a waiter or a holder by id, or a job that waits or runs by its job id."""
        self._not_in_redis_mode("cancel() from Python (use svc.cluster.slots.cancel)")
        return self.engine.cancel(item_id) or self.jobs.cancel_held(item_id)

    # ------------------------------------------------------------------ jobs

    def _make_job_runner(self, log_dir: str | Path | None, settings: JobSettings | None) -> JobRunner:
        settings = settings or JobSettings()
        if log_dir is not None:
            settings = dataclasses.replace(settings, log_dir=Path(log_dir))
        return JobRunner(
            self.engine, self.store, self.clock, settings, host_probe=self.host_probe, events=self, gate=self.job_gate
        )

    def task(self, name: str, queue: str = "default") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """`@svc.task("resize", queue="cpu")`: register an async or sync callable that jobs can run."""
        return self.jobs.task(name, queue)

    async def submit(
        self,
        task: str,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        owner: str | None = None,
        priority: int = 0,
        max_attempts: int = 1,
        max_runtime_s: float | None = None,
        gpus: int = 0,
        gpu_mem_mib: int = 0,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a registered task as a durable job; returns once the store has committed it.

        With `gpus`/`gpu_mem_mib` it waits for GPUs like a command; inside the
        callable `embedded_service.current_job()` gives its devices.
        `idempotency_key`: the same key from the same owner within a day returns the first job (`job.replayed`).
        """
        await self._jobs_ready(self.jobs.tasks.get(task).queue, gpus or gpu_mem_mib)
        return await self.jobs.submit(
            task,
            args,
            kwargs,
            owner=owner,
            priority=priority,
            max_attempts=max_attempts,
            max_runtime_s=max_runtime_s,
            gpus=gpus,
            gpu_mem_mib=gpu_mem_mib,
            idempotency_key=idempotency_key,
        )

    async def submit_command(
        self,
        argv: list[str],
        queue: str = "default",
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        gpus: int = 0,
        gpu_mem_mib: int = 0,
        priority: int = 0,
        max_runtime_s: float | None = None,
        max_attempts: int = 1,
        owner: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a command (argv, no shell) as a durable job; returns once the store has committed it
        (`idempotency_key` as for `submit`)."""
        await self._jobs_ready(queue, gpus or gpu_mem_mib)
        return await self.jobs.submit_command(
            argv, queue, env, cwd, gpus, gpu_mem_mib, priority, max_runtime_s, max_attempts, owner, idempotency_key
        )

    async def _jobs_ready(self, queue: str, gpus: int) -> None:
        """Redis mode: NotInRedisMode without a job store and for GPU jobs; `queue` known here."""
        if self.cluster is None:
            return
        if self.job_gate is None:
            raise NotInRedisMode(
                "jobs are off: this redis:// service owns no job store (serve --job-store sqlite:///PATH, or submit "
                "to a server that has one)"
            )
        if gpus:
            raise NotInRedisMode("jobs with GPUs are not available in redis mode yet")
        await self.job_gate.ready(queue)

    async def get_job(self, job_id: str) -> Job:
        """A job with live figures while it runs; raises `UnknownJob`."""
        return await self.jobs.get_job(job_id)

    async def list_jobs(
        self,
        state: JobState | str | None = None,
        queue: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        """Newest first; pass `next_cursor` back for the next page."""
        return await self.jobs.list_jobs(state, queue, owner, limit, cursor)

    async def cancel_job(self, job_id: str, wait_s: float | None = None) -> Job:
        """Cancel a queued or running job (a command's whole process group); returns it once stopped,
        or after `wait_s` seconds (default: kill grace + 2) as `cancelling` while it is being stopped."""
        return await self.jobs.cancel_job(job_id, wait_s)

    async def job_log(self, job_id: str, tail: int = 200) -> str:
        """The last `tail` lines of a command job's output."""
        return await self.jobs.job_log(job_id, tail)

    async def job_log_page(self, job_id: str, before: int | None = None, max_bytes: int = 256 * 1024) -> JobLogPage:
        """Whole lines of a command job's output ending at log position `before` (None: the end), at most
        `max_bytes` (1 to 1 MiB; ValueError outside), cut where each attempt began (see `JobLogPage`)."""
        page = await self.jobs.job_log_page(job_id, before, max_bytes)
        parts = [LogPart(attempt=attempt, text=text) for attempt, text in page.parts]
        return JobLogPage(start=page.start, end=page.end, first=page.first, parts=parts)

    def job_log_path(self, job_id: str) -> Path | None:
        """The job's log file, for following it; None when it has none (yet)."""
        return self.jobs.log_path(job_id)

    # -------------------------------------------------------------- observing

    @property
    def version(self) -> int:
        """Grows with every change of what `snapshot()` shows but devices and host figures."""
        if self.cluster is not None:
            return self.cluster.version
        return self.engine.version

    def snapshot(self) -> Snapshot:
        now = self.clock.time()
        engine = self.engine
        if self.cluster is not None:
            view = self.cluster.view
            return Snapshot.model_construct(
                seq=self.cluster.version,
                at=now,
                queues=[self._cluster_stats(name) for name in self.cluster.names()],
                devices=self.cluster.host_devices() or engine.pool.infos(now),
                gpu_probe=self.gpu_probe_reason,
                gpu_selection=engine.pool.selection_note,
                host=self.host,
                leases=view.leases,
                waiters=view.waiters,
                instances=view.instances,
                hosts=view.hosts,
            )
        return Snapshot.model_construct(  # its parts are models built just now: validating them again costs ~1/3
            seq=engine.version,
            at=now,
            queues=engine.all_queue_stats(now),
            devices=engine.pool.infos(now),
            gpu_probe=self.gpu_probe_reason,
            gpu_selection=engine.pool.selection_note,
            host=self.host,
            leases=engine.lease_infos(now),
            waiters=engine.waiter_infos(),
        )

    def history(self, seconds: float = 600) -> History:
        """Series of the last `seconds` (1 Hz). Redis mode: the deployment's, as last read from Redis (each
        second; `read_history` reads first), the same on every instance."""
        if self.cluster_history is not None:
            return self.cluster_history.ring.series(seconds, self.clock.time())
        return self.history_ring.series(seconds, self.clock.time())

    async def read_history(self, seconds: float = 600) -> History:
        """`history()` with the newest points: redis mode reads what Redis has first; in-process the same."""
        if self.cluster_history is not None:
            await self.cluster_history.refresh()  # Redis away: the last reading
        return self.history(seconds)

    async def sample_once(self) -> None:
        """Read the probes (in a thread), feed devices to admission (redis mode: publish them), add a history point."""
        if self.gpu_probe is not None:
            try:
                devices, reason = await asyncio.to_thread(self.gpu_probe.sample)
            except Exception as exc:  # a probe must never take the service down
                devices, reason = [], f"GPU probe failed: {exc}"
            self.gpu_probe_reason = reason
            if devices:
                self.engine.update_devices(devices)
            else:
                self.engine.devices_unreadable(reason or "the GPU probe read no device")
        if self.host_probe is not None:
            try:
                self.host = await asyncio.to_thread(self.host_probe.sample)
            except Exception as exc:
                log.warning("host probe failed: %s", exc)
        if self.host_gpus is not None:
            await self.host_gpus.publish()
        sample = self._sample()
        if self.cluster_history is not None:
            await self.cluster_history.record(sample)  # written by the elected instance, read by all
        else:
            self.history_ring.add(sample)

    def _sample(self) -> Sample:
        engine = self.engine
        host = self.host
        if self.cluster is not None:
            queues = {name: (s.in_use, s.waiting, s.config.limit) for name, s in self.cluster.view.stats.items()}
        else:
            queues = {name: (s.in_use, s.waiting + s.backlog, s.config.limit) for name, s in engine.queues.items()}
        return Sample(
            t=self.clock.time(),
            queues=queues,
            devices={
                str(index): (d.info.memory_used_mib, float(d.reserved_mib), d.info.utilization_pct)
                for index, d in engine.pool.devices.items()
            },
            host_cpu_pct=host.cpu_pct if host else None,
            host_memory_used_mib=host.memory_used_mib if host else None,
        )

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sample_interval_s)
            try:
                await self.sample_once()
                await self.keeper.sync()
            except StoreFault:
                pass  # logged once and counted by the store's health; saved again on the next tick
            except Exception:
                log.exception("sampling failed; will retry")

    def watched(self) -> bool:
        """Whether anything subscribed to `events()` (publishers skip building events for nobody)."""
        return bool(self._watchers)

    def publish(self, event: str, fields: dict[str, Any]) -> None:
        """Tell every `events()` subscriber: the engine's events and the service's own ("job", "prune")."""
        for watcher in list(self._watchers):
            watcher(event, fields)

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Engine events (granted, released, timed_out, ...) and job events ("job", "prune") as they happen."""
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=10_000)

        def listener(event: str, fields: dict[str, Any]) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((event, fields))

        if not self._watchers:  # the engine has a no-listener fast path: listen only while someone watches
            self.engine.listeners.append(self.publish)
        self._watchers.append(listener)
        try:
            while True:
                yield await queue.get()
        finally:
            self._watchers.remove(listener)
            if not self._watchers:
                self.engine.listeners.remove(self.publish)


def gpu_selection(visible_gpus: str | None, env: dict[str, str] | None = None) -> DeviceSelection | None:
    """The GPUs a service may use: `visible_gpus` if given, else `CUDA_VISIBLE_DEVICES` if set, else all (None)."""
    if visible_gpus is not None:
        return DeviceSelection.parse(visible_gpus, f"--gpus {visible_gpus}")
    cuda = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if cuda is None:
        return None
    return DeviceSelection.parse(cuda, f"CUDA_VISIBLE_DEVICES={cuda}")
