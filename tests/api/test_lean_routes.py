"""`@lean` routes answer exactly as FastAPI's own binding would, and refuse what they cannot bind.

One app serves the same endpoint twice, once `@lean` and once bound by FastAPI, over
real loopback HTTP; every request of a matrix of good and bad ones must get the same
status and the same error locations and types from both.
"""

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from embedded_service.api.auth import Authenticator, Principal, create_token
from embedded_service.api.deps import ItemId, QueueName, RoleCheck
from embedded_service.api.lean import SlotDeckRoute, lean
from embedded_service.model import Role
from embedded_service.stores import open_store


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=1, ge=1, le=10)
    note: str | None = None


class Echo(BaseModel):
    queue: str
    item: str
    size: int | None
    caller: str


class Server:
    def __init__(self, app: FastAPI) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            threading.Event().wait(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def twins() -> Iterator[tuple[str, dict[str, str]]]:
    store = open_store("memory://")

    async def tokens() -> dict[str, str]:
        await store.open()
        return {role.value: await create_token(store, role.value, role) for role in (Role.viewer, Role.client)}

    made = asyncio.run(tokens())
    Client = Annotated[Principal, Depends(RoleCheck(Authenticator(store), Role.client))]
    r = APIRouter(route_class=SlotDeckRoute)

    async def required(queue: QueueName, item: ItemId, order: Order, who: Client) -> Echo:
        return Echo(queue=queue, item=item, size=order.size, caller=who.name)

    async def optional(queue: QueueName, item: ItemId, who: Client, order: Order | None = None) -> Echo:
        return Echo(queue=queue, item=item, size=order.size if order else None, caller=who.name)

    for kind, endpoint in (("", required), ("-optional", optional)):
        r.post(f"/plain{kind}/{{queue}}/{{item}}", response_model=Echo, status_code=201)(endpoint)
        r.post(f"/lean{kind}/{{queue}}/{{item}}", response_model=Echo, status_code=201)(lean(twin(endpoint)))

    app = FastAPI(routes=r.routes)
    with Server(app) as url:
        yield url, made


def twin(endpoint: Callable[..., Awaitable[Echo]]) -> Callable[..., Awaitable[Echo]]:
    """Another function object with the same signature, so only one of the two is marked lean."""

    @functools.wraps(endpoint)
    async def same(**kwargs: object) -> Echo:
        return await endpoint(**kwargs)

    return same


def outcome(response: httpx.Response) -> tuple[int, object]:
    if response.status_code >= 400 and response.status_code != 422:
        return response.status_code, response.json().get("code")
    if response.status_code == 422:  # where, not the wording (pydantic names a JSON type error differently)
        return 422, sorted(tuple(e["loc"]) for e in response.json()["errors"])
    return response.status_code, response.json()


REQUESTS = [
    ("no token", None, "q1/i1", b'{"size": 2}'),
    ("viewer on a client route", "viewer", "q1/i1", b'{"size": 2}'),
    ("good", "client", "q1/i1", b'{"size": 2}'),
    ("defaults", "client", "q1/i1", b"{}"),
    ("bad queue name", "client", "Bad%20Queue/i1", b"{}"),
    ("out of range", "client", "q1/i1", b'{"size": 11}'),
    ("wrong type", "client", "q1/i1", b'{"size": "many"}'),
    ("unknown field", "client", "q1/i1", b'{"colour": "red"}'),
    ("several errors", "client", "q1/i1", b'{"size": 0, "note": 5}'),
    ("not an object", "client", "q1/i1", b"[1, 2]"),
    ("null", "client", "q1/i1", b"null"),
    ("empty body", "client", "q1/i1", b""),
    ("broken JSON", "client", "q1/i1", b'{"size": '),
    ("JSON with a +json type", "client", "q1/i1", b'{"size": 2}', "application/merged-patch+json; charset=utf-8"),
    ("JSON sent as text", "client", "q1/i1", b'{"size": 2}', "text/plain"),
    ("JSON without a type", "client", "q1/i1", b'{"size": 2}', None),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=[r[0] for r in REQUESTS])
@pytest.mark.parametrize("kind", ["", "-optional"])
def test_lean_binding_answers_like_fastapi(twins, request_, kind) -> None:  # type: ignore[no-untyped-def]
    url, tokens = twins
    what, who, path, body, content_type = (*request_, "application/json")[:5]
    headers = {"Content-Type": content_type} if content_type else {}
    if who is not None:
        headers["Authorization"] = f"Bearer {tokens.get(who, 'sdk_not-a-token')}"
    with httpx.Client(base_url=url, headers=headers) as http:
        lean_answer = http.post(f"/lean{kind}/{path}", content=body)
        plain_answer = http.post(f"/plain{kind}/{path}", content=body)
    assert outcome(lean_answer) == outcome(plain_answer), what
    if what == "good":
        assert lean_answer.status_code == 201
        assert lean_answer.json() == {"queue": "q1", "item": "i1", "size": 2, "caller": "client"}


def test_a_stranger_with_broken_json_learns_only_that_the_token_is_wrong(twins) -> None:  # type: ignore[no-untyped-def]
    """Lean or not, the caller is checked before the body is read (plain FastAPI would parse it first: 422)."""
    url, _ = twins
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sdk_not-a-token"}
    with httpx.Client(base_url=url, headers=headers) as http:
        lean_answer = http.post("/lean/q1/i1", content=b"{")
        plain_answer = http.post("/plain/q1/i1", content=b"{")
    assert lean_answer.status_code == 401
    assert plain_answer.status_code == 401


def test_a_parameter_lean_cannot_bind_is_refused_when_the_route_is_built() -> None:
    r = APIRouter(route_class=SlotDeckRoute)

    with pytest.raises(TypeError, match="cannot bind parameter 'limit'"):

        @r.get("/things")
        @lean
        async def things(limit: Annotated[int, Query()] = 10) -> dict[str, int]:
            return {"limit": limit}
