"""Parse a cluster store URL: ``redis://host:port/db?namespace=name`` (also ``rediss://``)."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ClusterURL:
    """``redis_url``: the URL redis-py gets (namespace removed); ``prefix``: ``{sd:<namespace>}``."""

    redis_url: str
    namespace: str

    @property
    def prefix(self) -> str:
        return "{sd:" + self.namespace + "}"


def parse_cluster_url(url: str) -> ClusterURL:
    """Split off ``namespace`` (default ``default``); raises ValueError with a one-line reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"unsupported cluster URL scheme {parts.scheme!r}: use redis:// or rediss://")
    query = parse_qsl(parts.query, keep_blank_values=True)
    namespace = "default"
    rest = []
    for key, value in query:
        if key == "namespace":
            namespace = value
        else:
            rest.append((key, value))
    if not _NAMESPACE.match(namespace):
        raise ValueError("namespace must be 1-64 characters of letters, digits, '_', '.', '-'")
    return ClusterURL(urlunsplit(parts._replace(query=urlencode(rest))), namespace)


def default_host_id() -> str:
    """This host's id when none is given: ``SLOTDECK_HOST_ID`` from the environment, else the hostname."""
    return os.environ.get("SLOTDECK_HOST_ID") or socket.gethostname()


def check_host_id(host_id: str) -> str:
    """A host id as cluster mode keys it: 1-200 characters, no ``:`` (it heads the process ids) or whitespace;
    ValueError otherwise."""
    if not 0 < len(host_id) <= 200 or ":" in host_id or any(c.isspace() for c in host_id):
        raise ValueError(f"host id {host_id[:200]!r} must be 1-200 characters without ':' or whitespace")
    return host_id
