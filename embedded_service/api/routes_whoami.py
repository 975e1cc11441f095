"""`GET /v1/whoami`: the calling token's name and role, so a dashboard can show what it may do."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ..model import Role
from .auth import Principal
from .deps import Need
from .problems import problems
from .state import ApiState


class WhoAmI(BaseModel):
    """The caller: `name` is the token's name (the audit actor and job owner); `role` its role."""

    name: str
    role: Role


def add_whoami_routes(r: APIRouter, st: ApiState, need: Need) -> None:
    Viewer = Annotated[Principal, Depends(need(Role.viewer))]

    @r.get("/v1/whoami", response_model=WhoAmI, responses=problems(401), tags=["tokens"])
    async def whoami(who: Viewer) -> WhoAmI:
        """Any valid token (any role) learns its own name and role; a server without auth answers admin."""
        return WhoAmI(name=who.name, role=who.role)
