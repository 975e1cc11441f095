"""Direct argument binding for the routes every client hits many times a second.

On acquire, release, renew and snapshot, FastAPI's general dependency solving cost as
much as SlotDeck's own work (a third of server time at 50 connections). A route marked
`@lean` keeps its declared signature, so FastAPI still documents it in the OpenAPI
schema, but its arguments are bound here: the caller by role, path strings checked
against their declared constraints, and at most one JSON body model. A signature with
anything else is refused when the route is built, so nothing is silently skipped.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends, Path
from pydantic import BaseModel, TypeAdapter, ValidationError

from .deps import RoleCheck
from .guard import DEFAULT_MAX_BODY_BYTES, Handler, guarded
from .problems import ProblemRoute, problem_for

Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Any]])
Bind = Callable[[Request, dict[str, Any]], Awaitable[None]]

_LEAN = "__slotdeck_lean__"


def lean(endpoint: Endpoint) -> Endpoint:
    """Mark a route's endpoint for direct binding (see the module docstring)."""
    setattr(endpoint, _LEAN, True)
    return endpoint


def is_lean(endpoint: Callable[..., Any]) -> bool:
    return getattr(endpoint, _LEAN, False)


def _invalid(where: str, error: ValidationError, prefix: tuple[str | int, ...]) -> RequestValidationError:
    errors = [{**e, "loc": (where, *prefix, *e["loc"])} for e in error.errors(include_url=False)]
    return RequestValidationError(errors)


def _declared_json(content_type: str) -> bool:
    """application/json or application/...+json, parameters (charset) aside."""
    kind, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _broken_json(raw: bytes) -> RequestValidationError | None:
    """FastAPI's answer to a body that is not JSON at all: where it broke (only on this error path)."""
    try:
        json.loads(raw)
    except ValueError as exc:
        where = ("body", getattr(exc, "pos", 0))
        return RequestValidationError([{"type": "json_invalid", "loc": where, "msg": "JSON decode error", "input": {}}])
    except RecursionError:
        msg = "JSON nested too deeply"
        return RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": msg, "input": {}}])
    return None


def _caller(name: str, check: RoleCheck) -> Bind:
    async def bind(request: Request, args: dict[str, Any]) -> None:
        args[name] = await check.resolve(request)

    return bind


def _request(name: str) -> Bind:
    async def bind(request: Request, args: dict[str, Any]) -> None:
        args[name] = request

    return bind


def _path(name: str, annotation: Any) -> Bind:
    adapter = TypeAdapter(annotation)

    async def bind(request: Request, args: dict[str, Any]) -> None:
        try:
            args[name] = adapter.validate_python(request.path_params[name])
        except ValidationError as exc:
            raise _invalid("path", exc, (name,)) from None

    return bind


def _body(name: str, model: type[BaseModel], optional: bool) -> Bind:
    async def bind(request: Request, args: dict[str, Any]) -> None:
        raw = await request.body()
        if optional and raw.strip() in (b"", b"null"):
            args[name] = None
            return
        if not raw.strip():
            raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
        if not _declared_json(request.headers.get("content-type", "")):
            msg = "send the body with Content-Type: application/json"  # as FastAPI: undeclared JSON is not read as JSON
            raise RequestValidationError([{"type": "model_attributes_type", "loc": ("body",), "msg": msg, "input": None}])
        try:
            args[name] = model.model_validate_json(raw)
        except ValidationError as exc:
            raise _broken_json(raw) or _invalid("body", exc, ()) from None

    return bind


def _body_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a `Model` or `Model | None` annotation; None for anything else."""
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        annotation = members[0] if len(members) == 1 else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def binder(endpoint: Callable[..., Any], path_names: set[str]) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    """The endpoint's arguments from a request; TypeError at build time for a parameter it cannot bind."""
    callers: list[Bind] = []
    steps: list[Bind] = []
    bodies = 0
    for name, parameter in inspect.signature(endpoint, eval_str=True).parameters.items():
        annotation = parameter.annotation
        base, *extras = get_args(annotation) if get_origin(annotation) is Annotated else (annotation,)
        depends = [e for e in extras if isinstance(e, Depends)]
        if depends and isinstance(depends[0].dependency, RoleCheck):
            callers.append(_caller(name, depends[0].dependency))
        elif base is Request and not extras:
            steps.append(_request(name))
        elif name in path_names and any(isinstance(e, Path) for e in extras):
            steps.append(_path(name, annotation))
        elif not extras and (model := _body_model(base)) is not None and bodies == 0:
            bodies += 1
            steps.append(_body(name, model, optional=parameter.default is None))
        else:
            raise TypeError(f"@lean cannot bind parameter {name!r} of {endpoint.__name__}")

    # 401/403 before any 422, so a stranger learns nothing of the input (FastAPI decodes the JSON before the caller)
    ordered = callers + steps

    async def bind(request: Request) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for step in ordered:
            await step(request, args)
        return args

    return bind


def respond(result: Any, status_code: int | None) -> Response:
    """A lean route's answer: its own Response, or its model as JSON."""
    if isinstance(result, Response):
        return result
    if isinstance(result, BaseModel):
        return Response(result.model_dump_json(), status_code=status_code or 200, media_type="application/json")
    raise TypeError(f"a lean route returned {type(result).__name__}, not a Response or a model")


class SlotDeckRoute(ProblemRoute):
    """The API's route class: errors as problem documents, `@lean` endpoints bound directly, and the
    limits of `guard` (body size; the caller before the body) on every route."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def get_route_handler(self) -> Handler:
        return guarded(self._handler(), self.max_body_bytes, self._caller_before_body())

    def _caller_before_body(self) -> RoleCheck | None:
        """The role check to run before a body is read; lean routes bind the caller first themselves."""
        if is_lean(self.endpoint) or self.body_field is None:
            return None
        return next((d.call for d in self.dependant.dependencies if isinstance(d.call, RoleCheck)), None)

    def _handler(self) -> Handler:
        if not is_lean(self.endpoint):
            return super().get_route_handler()
        bind = binder(self.endpoint, set(self.param_convertors))
        endpoint, status_code = self.endpoint, self.status_code

        async def handler(request: Request) -> Response:
            try:
                return respond(await endpoint(**await bind(request)), status_code)
            except Exception as exc:
                return problem_for(exc)

        return handler


def route_class(max_body_bytes: int) -> type[SlotDeckRoute]:
    """SlotDeckRoute with this body limit (routes build their handlers when they are made)."""
    return type("SlotDeckRoute", (SlotDeckRoute,), {"max_body_bytes": max_body_bytes})
