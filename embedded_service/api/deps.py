"""Route helpers shared by the route modules: role checks that show in the OpenAPI schema."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from fastapi import Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..model import QUEUE_NAME_PATTERN, Role
from .auth import Authenticator, Principal
from .state import ApiState

bearer = HTTPBearer(auto_error=False, description="A SlotDeck token (`slotdeck token create`).")

QueueName = Annotated[str, Path(pattern=QUEUE_NAME_PATTERN, description="Queue name")]
ItemId = Annotated[str, Path(min_length=1, max_length=200)]


@dataclass(frozen=True, eq=False)
class RoleCheck:
    """A route dependency: the caller, who must hold at least `role`. The bearer parameter is
    there for the OpenAPI schema; the token is read from the request by the Authenticator."""

    auth: Authenticator
    role: Role

    async def __call__(
        self, request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
    ) -> Principal:
        return await self.resolve(request)

    async def resolve(self, request: Request) -> Principal:
        return await self.auth.require(request, self.role)


Need = Callable[[Role], RoleCheck]


def role_checker(state: ApiState) -> Need:
    """`Depends(need(Role.operator))` resolves the caller and enforces the role on the route."""

    def need(role: Role) -> RoleCheck:
        return RoleCheck(state.auth, role)

    return need


def redact_url(url: str) -> str:
    """A store URL without its password, fit for /health and logs (also a Sentinel URL's several hosts)."""
    parts = urlsplit(url)
    credentials, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in credentials:
        return url
    netloc = f"{credentials.partition(':')[0]}:***@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
