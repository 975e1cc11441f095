"""Prometheus exposition: gauges and counters read from the snapshot at scrape time,
wait and hold histograms fed by engine events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .snapshots import SnapshotCache

BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HOLD_ENDS = frozenset({"released", "expired", "revoked"})


class SnapshotCollector(Collector):
    """Per-queue, per-device and host figures, straight from the (cached) snapshot."""

    def __init__(self, snapshots: SnapshotCache) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshots.model()
        q = ["queue"]
        gauges = {
            "limit": GaugeMetricFamily("slotdeck_queue_limit", "Slots of the queue", labels=q),
            "in_use": GaugeMetricFamily("slotdeck_queue_in_use", "Slots held now", labels=q),
            "waiting": GaugeMetricFamily("slotdeck_queue_waiting", "Waiters now", labels=q),
            "paused": GaugeMetricFamily("slotdeck_queue_paused", "1 when the queue admits nobody", labels=q),
            "in_use_mark": GaugeMetricFamily("slotdeck_queue_in_use_high_water", "Most slots held at once", labels=q),
            "waiting_mark": GaugeMetricFamily("slotdeck_queue_waiting_high_water", "Most waiters at once", labels=q),
            "stuck": GaugeMetricFamily("slotdeck_queue_stuck", "Holders older than stuck_after_s", labels=q),
            "est_wait": GaugeMetricFamily("slotdeck_queue_estimated_wait_seconds", "Estimated wait of a newcomer", labels=q),
        }
        totals = {
            name: CounterMetricFamily(f"slotdeck_queue_{name}", f"Leases {name.replace('_', ' ')} since creation", labels=q)
            for name in ("granted", "released", "timed_out", "rejected", "cancelled", "expired", "revoked", "bad_releases")
        }
        for stats in snap.queues:
            label = [stats.config.name]
            gauges["limit"].add_metric(label, stats.config.limit)
            gauges["in_use"].add_metric(label, stats.in_use)
            gauges["waiting"].add_metric(label, stats.waiting)
            gauges["paused"].add_metric(label, 1.0 if stats.config.paused else 0.0)
            gauges["in_use_mark"].add_metric(label, stats.marks.in_use)
            gauges["waiting_mark"].add_metric(label, stats.marks.waiting)
            gauges["stuck"].add_metric(label, stats.stuck)
            if stats.est_wait_s is not None:
                gauges["est_wait"].add_metric(label, stats.est_wait_s)
            for name, family in totals.items():
                family.add_metric(label, getattr(stats.totals, name))
        yield from gauges.values()
        yield from totals.values()
        yield from self._devices(snap)

    @staticmethod
    def _devices(snap: Any) -> Iterator[Metric]:
        d = ["gpu", "name"]
        used = GaugeMetricFamily("slotdeck_gpu_memory_used_mib", "GPU memory in use (probe)", labels=d)
        total = GaugeMetricFamily("slotdeck_gpu_memory_total_mib", "GPU memory", labels=d)
        reserved = GaugeMetricFamily("slotdeck_gpu_memory_reserved_mib", "GPU memory promised to leases", labels=d)
        util = GaugeMetricFamily("slotdeck_gpu_utilization_percent", "GPU utilisation", labels=d)
        leases = GaugeMetricFamily("slotdeck_gpu_leases", "Leases placed on the GPU", labels=d)
        free = GaugeMetricFamily("slotdeck_gpu_memory_free_mib", "GPU memory admission can still promise", labels=d)
        health = GaugeMetricFamily(
            "slotdeck_gpu_health", "1 for the GPU's health (ok, stale, unreadable, lost, unified)", labels=[*d, "health"]
        )
        for dev in snap.devices:
            label = [str(dev.index), dev.name]
            if dev.memory_used_mib is not None:
                used.add_metric(label, dev.memory_used_mib)
            if dev.memory_total_mib is not None:
                total.add_metric(label, dev.memory_total_mib)
            reserved.add_metric(label, dev.memory_reserved_mib)
            if dev.utilization_pct is not None:
                util.add_metric(label, dev.utilization_pct)
            leases.add_metric(label, len(dev.leases))
            if dev.memory_free_mib is not None:
                free.add_metric(label, dev.memory_free_mib)
            health.add_metric([*label, dev.health], 1)
        yield from (used, total, reserved, util, leases, free, health)
        if snap.host is not None:
            if snap.host.cpu_pct is not None:
                yield GaugeMetricFamily("slotdeck_host_cpu_percent", "Host CPU", value=snap.host.cpu_pct)
            if snap.host.memory_used_mib is not None:
                yield GaugeMetricFamily(
                    "slotdeck_host_memory_used_mib", "Host memory in use", value=snap.host.memory_used_mib
                )


class StoreCollector(Collector):
    """Whether the store takes writes, and its failures counted per cause (see `stores.faults.StoreHealth`)."""

    def __init__(self, snapshots: SnapshotCache) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        health = getattr(self.snapshots.service.store, "health", None)
        if health is None:
            return
        yield GaugeMetricFamily("slotdeck_store_ok", "1 while the store's writes go through", value=health.failing is None)
        errors = CounterMetricFamily("slotdeck_store_errors", "Store failures since start", labels=["cause"])
        for cause, count in sorted(health.errors.items()):
            errors.add_metric([cause], count)
        yield errors


class Metrics:
    """One registry per app (several apps in one process must not collide)."""

    def __init__(self, snapshots: SnapshotCache) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(SnapshotCollector(snapshots))
        self.registry.register(StoreCollector(snapshots))
        self.wait = Histogram(
            "slotdeck_wait_seconds", "Time from request to grant", ["queue"], buckets=BUCKETS, registry=self.registry
        )
        self.hold = Histogram(
            "slotdeck_hold_seconds", "Time a lease was held", ["queue", "end"], buckets=BUCKETS, registry=self.registry
        )

    def observe(self, event: str, fields: dict[str, Any]) -> None:
        queue = str(fields.get("queue"))
        if event == "granted" and "waited_s" in fields:
            self.wait.labels(queue).observe(float(fields["waited_s"]))
        elif event in HOLD_ENDS and "held_s" in fields:
            self.hold.labels(queue, event).observe(float(fields["held_s"]))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
