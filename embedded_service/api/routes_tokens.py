"""Token administration (admin role); a new token is shown once, only its hash is kept."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from ..model import Role, TokenInfo
from .auth import Principal, create_token
from .deps import ItemId, Need
from .problems import ApiProblem, problems
from .state import ApiState


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    role: Role


class NewToken(TokenInfo):
    token: str = Field(description="The token itself; shown this once.")


def add_token_routes(r: APIRouter, st: ApiState, need: Need) -> None:
    store = st.service.store
    Admin = Annotated[Principal, Depends(need(Role.admin))]

    @r.get("/v1/tokens", response_model=list[TokenInfo], responses=problems(401, 403), tags=["tokens"])
    async def list_tokens(_: Admin) -> list[TokenInfo]:
        """Names and roles of the tokens (never the tokens or their hashes)."""
        return [TokenInfo(name=t.name, role=t.role, created_at=t.created_at) for t in await store.list_tokens()]

    @r.post("/v1/tokens", response_model=NewToken, status_code=201, responses=problems(401, 403, 422), tags=["tokens"])
    async def new_token(body: TokenCreate, who: Admin) -> NewToken:
        """Create (or replace) the token called `name`; the answer is the only time it is shown."""
        token = await create_token(store, body.name, body.role)
        st.auth.forget()
        stored = next(t for t in await store.list_tokens() if t.name == body.name)
        await st.audit(who, "token.create", body.name, None, {"role": body.role.value})
        return NewToken(name=stored.name, role=stored.role, created_at=stored.created_at, token=token)

    @r.delete(
        "/v1/tokens/{name}",
        status_code=204,
        response_class=Response,
        responses=problems(401, 403, 404, 422),
        tags=["tokens"],
    )
    async def delete_token(name: ItemId, who: Admin) -> Response:
        """Revoke a token at once."""
        if not await store.delete_token(name):
            raise ApiProblem(404, "Unknown token", f"no token named {name!r}", code="unknown_token")
        st.auth.forget()
        await st.audit(who, "token.delete", name, None, None)
        return Response(status_code=204)
