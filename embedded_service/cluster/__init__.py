"""Cluster mode, first step: one admission domain on Redis 7 for many processes and hosts.

``ClusterSlots`` (asyncio) and ``BlockingClusterSlots`` (threads, Celery) give every process that
opens the same ``redis://host:port/db?namespace=name`` one limit, one line of waiters, one set of
marks and totals. Needs the ``redis`` extra and a Redis 7+ with ``maxmemory-policy noeviction``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedded_service.cluster.blocking import BlockingClusterSlots
    from embedded_service.cluster.slots import ClusterLease, ClusterSlots, LeaseLost, RedisNotSafe

__all__ = ["BlockingClusterSlots", "ClusterLease", "ClusterSlots", "LeaseLost", "RedisNotSafe"]
_HOMES = {"BlockingClusterSlots": "blocking"} | dict.fromkeys(__all__[1:], "slots")


def __getattr__(name: str) -> Any:
    """The classes load on first use, so `cluster.url` (scheme checks) needs no redis extra."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
