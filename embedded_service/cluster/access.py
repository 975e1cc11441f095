"""Tokens and audit shared by every server of a redis-mode deployment.

In redis mode several `slotdeck serve` (behind a load balancer, or a dashboard failing over between them)
are one deployment: a token made through one must work on all, a token deleted through one must stop
working on all (within the authenticator's cache TTL, 2 s), and the audit trail must be one trail.
`SharedAccess` wraps a server's own store (memory, or the job store it owns) and keeps tokens and audit
in Redis under the deployment's hash tag; everything else goes to the wrapped store.

Keys (``P`` = ``{sd:<namespace>}``): ``P:tokens`` (hash: name -> StoredToken JSON, only the token's
SHA-256, never the token), ``P:tokens:by_hash`` (hash: token hash -> name), ``P:audit`` (sorted set: score
= entry id, member = ``"<id>:<AuditEntry JSON>"``, the newest ``AUDIT_KEPT``) and ``P:audit:id`` (the id
counter). Each change is one script, so a replaced token's old hash never outlives it.

They live as long as the Redis data: with AOF across restarts; a Redis that lost its data (see the
epoch in `cluster.slots`) lost the tokens too, and they are made again with `slotdeck token create
--store redis://...`. Errors: redis-py's ConnectionError/TimeoutError for an unreachable Redis (the API
answers them as a store fault).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from ..errors import StoreFault
from ..model import AuditEntry, StoredToken
from .url import parse_cluster_url, where

if TYPE_CHECKING:
    import redis.asyncio as aredis

    from ..stores import Store

AUDIT_KEPT = 100_000  # audit entries kept; the oldest go first

_SAVE_TOKEN = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and ARGV[4] ~= '1' then return 0 end
if old then redis.call('HDEL', KEYS[2], cjson.decode(old)['token_hash']) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

_DELETE_TOKEN = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('HDEL', KEYS[2], cjson.decode(old)['token_hash'])
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""

_ADD_AUDIT = """
local id = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], id, id .. ':' .. ARGV[1])
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1) end
return id
"""


class SharedAccess:
    """A `Store` whose tokens and audit live in Redis (see the module docstring); the rest is `local`'s.

    `url`: the deployment's ``redis://``/``rediss://``/``redis+sentinel://`` URL (with ``namespace``);
    `socket_timeout_s`: each Redis call's bound (seconds)."""

    def __init__(self, url: str, local: Store, socket_timeout_s: float = 5.0) -> None:
        self.local = local
        self._url = url
        self._where = parse_cluster_url(url)
        self._timeout_s = socket_timeout_s
        prefix = self._where.prefix
        self._tokens, self._by_hash = f"{prefix}:tokens", f"{prefix}:tokens:by_hash"
        self._audit, self._audit_id = f"{prefix}:audit", f"{prefix}:audit:id"
        self._redis: aredis.Redis | None = None

    def __getattr__(self, name: str) -> Any:  # queues, jobs, leases...: the wrapped store's
        return getattr(self.local, name)

    @property
    def url(self) -> str:
        return self.local.url

    async def open(self) -> None:
        """Open the wrapped store and check Redis answers: StoreFault (one line, no password) when it does not
        ("redis unreachable") or refuses the URL's database or Sentinel ("redis refused")."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import ResponseError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        await self.local.open()
        timeout = self._timeout_s
        self._redis = self._where.connect(decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            await self._redis.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as exc:
            await self.close()
            cause = "redis refused" if isinstance(exc, ResponseError) else "redis unreachable"
            raise StoreFault(cause, f"{where(self._url)}: {exc}") from None

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        await self.local.close()

    @property
    def redis(self) -> aredis.Redis:
        if self._redis is None:
            raise RuntimeError("the shared token store is not open")
        return self._redis

    # ------------------------------------------------------------------ tokens

    async def save_token(self, token: StoredToken, replace: bool = True) -> bool:
        keys = (self._tokens, self._by_hash)
        args = (token.name, token.model_dump_json(), token.token_hash, "1" if replace else "0")
        return bool(await cast(Any, self.redis.eval(_SAVE_TOKEN, 2, *keys, *args)))

    async def find_token(self, token_hash: str) -> StoredToken | None:
        name = await cast(Any, self.redis.hget(self._by_hash, token_hash))
        if name is None:
            return None
        raw = await cast(Any, self.redis.hget(self._tokens, name))
        stored = StoredToken.model_validate_json(raw) if raw is not None else None
        return stored if stored is not None and stored.token_hash == token_hash else None

    async def list_tokens(self) -> list[StoredToken]:
        raw: dict[str, str] = await cast(Any, self.redis.hgetall(self._tokens))
        return sorted((StoredToken.model_validate_json(v) for v in raw.values()), key=lambda t: t.created_at)

    async def delete_token(self, name: str) -> bool:
        return bool(await cast(Any, self.redis.eval(_DELETE_TOKEN, 2, self._tokens, self._by_hash, name)))

    # ------------------------------------------------------------------- audit

    async def add_audit(self, entry: AuditEntry) -> AuditEntry:
        data = entry.model_dump_json(exclude={"id"})
        entry_id = await cast(Any, self.redis.eval(_ADD_AUDIT, 2, self._audit, self._audit_id, data, AUDIT_KEPT))
        return entry.model_copy(update={"id": int(entry_id)})

    async def list_audit(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        """Newest first: at most `limit` entries with ids below `before_id` (None: the newest)."""
        top = "+inf" if before_id is None else f"({before_id}"
        rows = await cast(Any, self.redis.zrevrangebyscore(self._audit, top, "-inf", start=0, num=limit))
        entries = []
        for row in rows:
            entry_id, _, data = row.partition(":")
            entries.append(AuditEntry.model_validate({**json.loads(data), "id": int(entry_id)}))
        return entries


def shared_access(url: str, local: Store) -> Store:
    """`local` with tokens and audit shared through the deployment's Redis (typed as the `Store` it stands for)."""
    return cast("Store", SharedAccess(url, local))
