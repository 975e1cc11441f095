"""Token administration (admin role); a new token is shown once, only its hash is kept.

A name that exists is replaced only when asked (`replace`); the token making the
request is replaced or revoked only with `confirm_self` (an admin does not lock
itself out by accident). Every change is audited, never the token itself.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ..model import Role, TokenInfo
from .auth import Principal, create_new_token
from .deps import ItemId, Need
from .problems import ApiProblem, problems
from .state import ApiState


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    role: Role
    replace: bool = Field(default=False, description="Replace a token of this name (default: 409 if one exists).")
    confirm_self: bool = Field(default=False, description="Needed to replace the token making this request.")


class NewToken(TokenInfo):
    token: str = Field(description="The token itself; shown this once.")


def add_token_routes(r: APIRouter, st: ApiState, need: Need) -> None:
    store = st.service.store
    Admin = Annotated[Principal, Depends(need(Role.admin))]

    @r.get("/v1/tokens", response_model=list[TokenInfo], responses=problems(401, 403), tags=["tokens"])
    async def list_tokens(_: Admin) -> list[TokenInfo]:
        """Names and roles of the tokens (never the tokens or their hashes)."""
        return [TokenInfo(name=t.name, role=t.role, created_at=t.created_at) for t in await store.list_tokens()]

    def check_shared() -> None:
        """Redis mode without tokens (`--no-auth`): the token table is the deployment's, and a token made here
        would let whoever reaches this server in on every server (403; read the names, change them elsewhere)."""
        if not st.settings.auth and st.service.cluster is not None:
            raise ApiProblem(
                403,
                "Not allowed",
                "this server runs without tokens (--no-auth): it does not change the tokens every server of the "
                "redis-mode deployment shares; use a server with tokens or slotdeck token ... --store redis://...",
                code="forbidden",
            )

    def check_self(name: str, who: Principal, confirmed: bool, what: str) -> None:
        if name == who.name and not confirmed:
            raise ApiProblem(
                409,
                "This is the token making the request",
                f"{what} token {name!r} would end this session's access; confirm it (confirm_self)",
                code="token_is_caller",
            )

    @r.post("/v1/tokens", response_model=NewToken, status_code=201, responses=problems(401, 403, 409, 422), tags=["tokens"])
    async def new_token(body: TokenCreate, who: Admin) -> NewToken:
        """Create the token called `name` (or replace it, with `replace`); the answer is the only time it is shown."""
        check_shared()
        exists = ApiProblem(
            409, "Token exists", f"a token named {body.name!r} exists; replace it explicitly", code="token_exists"
        )
        before = next((t for t in await store.list_tokens() if t.name == body.name), None)
        if before is not None and not body.replace:
            raise exists
        if before is not None:
            check_self(body.name, who, body.confirm_self, "replacing")
        token = await create_new_token(store, body.name, body.role, replace=body.replace)
        if token is None:  # made meanwhile by another request (through this server or another)
            raise exists
        st.auth.forget()
        st.broker.end_streams_of(body.name)  # a replaced token's open event streams end with it
        stored = next(t for t in await store.list_tokens() if t.name == body.name)
        action, old = ("token.replace", {"role": before.role.value}) if before else ("token.create", None)
        await st.audit(who, action, body.name, old, {"role": body.role.value})
        return NewToken(name=stored.name, role=stored.role, created_at=stored.created_at, token=token)

    @r.delete(
        "/v1/tokens/{name}",
        status_code=204,
        response_class=Response,
        responses=problems(401, 403, 404, 409, 422),
        tags=["tokens"],
    )
    async def delete_token(
        name: ItemId,
        who: Admin,
        confirm_self: Annotated[bool, Query(description="Needed to revoke the token making this request.")] = False,
    ) -> Response:
        """Revoke a token at once."""
        check_shared()
        check_self(name, who, confirm_self, "revoking")
        if not await store.delete_token(name):
            raise ApiProblem(404, "Unknown token", f"no token named {name!r}", code="unknown_token")
        st.auth.forget()
        st.broker.end_streams_of(name)  # a revoked token's open event streams end at once
        await st.audit(who, "token.delete", name, None, None)
        return Response(status_code=204)
