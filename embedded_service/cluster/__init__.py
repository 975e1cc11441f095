"""Cluster mode, first step: one admission domain on Redis 7 for many processes and hosts.

``ClusterSlots`` (asyncio) and ``BlockingClusterSlots`` (threads, Celery) give every process that
opens the same ``redis://host:port/db?namespace=name`` one limit, one line of waiters, one set of
marks and totals. Needs the ``redis`` extra and a Redis 7+ with ``maxmemory-policy noeviction``.
"""

from embedded_service.cluster.blocking import BlockingClusterSlots
from embedded_service.cluster.slots import ClusterLease, ClusterSlots, LeaseLost, RedisNotSafe

__all__ = ["BlockingClusterSlots", "ClusterLease", "ClusterSlots", "LeaseLost", "RedisNotSafe"]
