"""Bearer tokens with roles, hashed at rest.

A token is 32 random bytes (URL-safe text); the store keeps only its SHA-256.
Lookups go by hash and the found hash is compared again in constant time, so
neither the store nor the timing of a check gives a token away. Tokens are
never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from fastapi import Request

from ..model import Role, StoredToken
from ..stores import Store
from .problems import ApiProblem

TOKEN_PREFIX = "sdk_"
CACHE_TTL_S = 2.0  # a token deleted straight in the store stops working within this

RANK = {Role.viewer: 0, Role.client: 1, Role.operator: 2, Role.admin: 3}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh high-entropy token (shown once, stored only as its hash)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_token(store: Store, name: str, role: Role | str) -> str:
    """Store a new token's hash under `name` (replacing one of that name) and return the plain token."""
    token = await create_new_token(store, name, role, replace=True)
    assert token is not None  # replace=True always stores
    return token


async def create_new_token(store: Store, name: str, role: Role | str, replace: bool) -> str | None:
    """Store a new token's hash under `name` and return the plain token; None (nothing stored) when a token of
    that name exists and `replace` is False (one step in the store: concurrent creators cannot both win)."""
    token = new_token()
    stored = StoredToken(name=name, role=Role(role), created_at=time.time(), token_hash=hash_token(token))
    return token if await store.save_token(stored, replace=replace) else None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name (used as audit actor and job owner) and role."""

    name: str
    role: Role

    def allows(self, role: Role) -> bool:
        """Roles are ranked: viewer < client < operator < admin."""
        return RANK[self.role] >= RANK[role]


ANONYMOUS = Principal("anonymous", Role.admin)


class Authenticator:
    """Resolves `Authorization: Bearer ...` to a Principal; with `enabled=False` everyone is admin (loopback only)."""

    def __init__(self, store: Store, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled
        self._cache: dict[str, tuple[float, StoredToken | None]] = {}

    def forget(self) -> None:
        """Drop cached lookups (after a token is created or deleted)."""
        self._cache.clear()

    async def _lookup(self, token_hash: str) -> StoredToken | None:
        now = time.monotonic()
        cached = self._cache.get(token_hash)
        if cached is not None and now - cached[0] < CACHE_TTL_S:
            return cached[1]
        found = await self.store.find_token(token_hash)
        if len(self._cache) > 10_000:
            self._cache.clear()  # bounded: unknown tokens must not grow it forever
        self._cache[token_hash] = (now, found)
        return found

    async def principal(self, request: Request) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiProblem(
                401,
                "Authentication required",
                "send 'Authorization: Bearer <token>'",
                code="unauthenticated",
                headers={"WWW-Authenticate": "Bearer"},
            )
        token_hash = hash_token(token)
        stored = await self._lookup(token_hash)
        if stored is None or not hmac.compare_digest(stored.token_hash, token_hash):
            raise ApiProblem(
                401,
                "Unknown token",
                "the bearer token is not known to this server",
                code="unauthenticated",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return Principal(stored.name, stored.role)

    async def require(self, request: Request, role: Role) -> Principal:
        principal = await self.principal(request)
        if not principal.allows(role):
            raise ApiProblem(
                403,
                "Not allowed",
                f"token {principal.name!r} has role {principal.role.value}; this needs {role.value}",
                code="forbidden",
            )
        return principal
