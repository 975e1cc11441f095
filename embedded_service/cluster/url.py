"""Parse a cluster store URL and connect to it.

Forms (``namespace`` defaults to ``default``; every other query parameter goes to redis-py):

- ``redis://[:password@]host:port/db?namespace=name`` (``rediss://`` for TLS): one Redis server;
- ``redis+sentinel://[:password@]host:port[,host:port...]/service/db?namespace=name``: the master that
  Redis Sentinel names ``service`` (``rediss+sentinel://`` for TLS to it); redis-py's Sentinel client finds
  the master again after a failover. The password is the master's; the sentinels are asked without one.
"""

from __future__ import annotations

import os
import re
import socket
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    import redis.asyncio as aredis

CLUSTER_SCHEMES = ("redis://", "rediss://", "redis+sentinel://", "rediss+sentinel://")
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SERVICE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def is_cluster_url(url: str) -> bool:
    """Whether `url` names a redis-mode store (any of `CLUSTER_SCHEMES`)."""
    return url.startswith(CLUSTER_SCHEMES)


@dataclass(frozen=True)
class ClusterURL:
    """``redis_url``: the URL redis-py gets (namespace removed; for Sentinel, the URL as given without it);
    ``prefix``: ``{sd:<namespace>}``; ``sentinels``: (host, port) pairs, empty for one server;
    ``service``: the Sentinel master name."""

    redis_url: str
    namespace: str
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    password: str | None = None
    tls: bool = False

    @property
    def prefix(self) -> str:
        return "{sd:" + self.namespace + "}"

    def connect(self, **kwargs: Any) -> aredis.Redis:
        """A redis-py asyncio client (``kwargs``: its connection options, e.g. ``socket_timeout``)."""
        import redis.asyncio as aredis
        from redis.asyncio.sentinel import Sentinel

        if not self.sentinels:
            return aredis.Redis.from_url(self.redis_url, **kwargs)
        timeouts = {k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout") if k in kwargs}
        sentinel = Sentinel(list(self.sentinels), sentinel_kwargs=timeouts)
        return sentinel.master_for(self.service, db=self.db, password=self.password, ssl=self.tls, **kwargs)


def parse_cluster_url(url: str) -> ClusterURL:
    """Split off ``namespace`` (and, for Sentinel, the sentinels, service and db); raises ValueError with a
    one-line reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "redis+sentinel", "rediss+sentinel"):
        raise ValueError(f"unsupported cluster URL scheme {parts.scheme!r}: use redis://, rediss:// or redis+sentinel://")
    namespace = "default"
    rest = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "namespace":
            namespace = value
        else:
            rest.append((key, value))
    if not _NAMESPACE.match(namespace):
        raise ValueError("namespace must be 1-64 characters of letters, digits, '_', '.', '-'")
    if not parts.scheme.endswith("+sentinel"):
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"database {db!r} must be a number")
        redis_url = urlunsplit(parts._replace(query=urlencode(rest)))
        _check_options(redis_url)
        return ClusterURL(redis_url, namespace)
    return _sentinel_url(url, parts.scheme.startswith("rediss"), parts.netloc, parts.path, namespace, rest)


def _sentinel_url(url: str, tls: bool, netloc: str, path: str, namespace: str, rest: list[tuple[str, str]]) -> ClusterURL:
    credentials, _, hosts = netloc.rpartition("@")
    password = unquote(credentials.partition(":")[2]) if credentials else None
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"sentinel address {item!r} must be host:port (the port is needed: usually 26379)")
        sentinels.append((host.strip("[]"), int(port)))
    service, _, db = path.strip("/").partition("/")
    if not _SERVICE.match(service):
        raise ValueError("a sentinel URL names the master after the addresses: redis+sentinel://host:26379/mymaster")
    if db and not db.isdigit():
        raise ValueError(f"database {db!r} must be a number")
    if rest:
        raise ValueError(f"unsupported option for a sentinel URL: {rest[0][0]}")
    return ClusterURL(url, namespace, tuple(sentinels), service, int(db or 0), password or None, tls)


def default_host_id() -> str:
    """This host's id when none is given: ``SLOTDECK_HOST_ID`` from the environment, else the hostname."""
    return os.environ.get("SLOTDECK_HOST_ID") or socket.gethostname()


def check_host_id(host_id: str) -> str:
    """A host id as cluster mode keys it: 1-200 printable characters (no control or invisible ones: it is shown in
    tables and logs), no ``:`` (it heads the process ids) or whitespace; ValueError otherwise."""
    if (
        not 0 < len(host_id) <= 200
        or ":" in host_id
        or any(c.isspace() or not c.isprintable() or unicodedata.category(c) == "Cf" for c in host_id)
    ):
        raise ValueError(f"host id {host_id[:200]!r} must be 1-200 printable characters without ':', whitespace or control")
    return host_id


def _check_options(redis_url: str) -> None:
    """Build (without connecting) the connection redis-py would make of `redis_url`: ValueError (one line, no
    password) for an option it does not know or a value it cannot read. Skipped without the redis extra."""
    try:
        from redis.asyncio.connection import ConnectionPool
    except ImportError:
        return
    try:
        pool = ConnectionPool.from_url(redis_url)
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:  # "...__init__() got an unexpected keyword argument 'foo'"
        name = str(exc).rpartition(" ")[2]
        raise ValueError(f"unsupported option in the URL: {name}") from None
    except ValueError as exc:  # "Invalid value for 'socket_timeout' in connection URL."
        raise ValueError(str(exc).rstrip(".")) from None


def where(url: str) -> str:
    """The Redis URL without password or namespace, for an error message."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{hosts}{parts.path}"
