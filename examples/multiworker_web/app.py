"""A FastAPI app served by ``uvicorn --workers 4`` whose slow endpoint runs at most MW_LIMIT at once
across all four worker processes (and any other host on the same Redis): cluster mode.

    .venv/bin/uvicorn --app-dir examples/multiworker_web app:app --workers 4 --port 8000

POST /work?seconds=S   slow work inside a slot (503 + Retry-After after MW_WAIT_S without one)
GET  /status           the queue as every worker sees it (limit, in_use, waiting) and the peak
                       of bodies running at once, measured by the app itself
PUT  /admin/limit      {"limit": n} with "Authorization: Bearer $MW_OPERATOR_TOKEN": changes
                       the limit for every worker at once and starts a new peak measurement

Environment: MW_STORE (redis://127.0.0.1:6379/0?namespace=multiworker-example), MW_LIMIT (3,
used only when the queue does not exist yet), MW_WAIT_S (30), MW_OPERATOR_TOKEN (unset: the
admin route answers 403).
"""

from __future__ import annotations

import asyncio
import hmac
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import redis.asyncio as aredis
from fastapi import FastAPI, Header, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from embedded_service import SlotTimeout
from embedded_service.cluster import ClusterSlots
from embedded_service.cluster.url import parse_cluster_url

STORE = os.environ.get("MW_STORE", "redis://127.0.0.1:6379/0?namespace=multiworker-example")
QUEUE = "work"
WAIT_S = float(os.environ.get("MW_WAIT_S", "30"))
_parsed = parse_cluster_url(STORE)
RUNNING, PEAK = f"{_parsed.namespace}:running", f"{_parsed.namespace}:peak"
ENTER = (
    "local n = redis.call('INCR', KEYS[1]) "
    "if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end"
)


class State:
    slots: ClusterSlots
    measure: aredis.Redis


state = State()


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    # Each uvicorn worker is its own process with its own ClusterSlots; Redis makes them one domain.
    async with ClusterSlots(STORE) as slots:
        if QUEUE not in (await slots.snapshot())["queues"]:  # keep a limit an operator has changed
            await slots.configure_queue(QUEUE, limit=int(os.environ.get("MW_LIMIT", "3")))
        state.slots = slots
        state.measure = aredis.Redis.from_url(_parsed.redis_url)
        try:
            yield
        finally:
            await state.measure.aclose()


app = FastAPI(title="multi-worker example", lifespan=lifespan)


@app.post("/work")
async def work(seconds: Annotated[float, Query(ge=0, le=60)] = 1.0) -> Any:
    try:
        async with state.slots.slot(QUEUE, owner=f"pid {os.getpid()}", timeout_s=WAIT_S) as lease:
            await state.measure.eval(ENTER, 2, RUNNING, PEAK)
            try:
                await asyncio.sleep(seconds)  # the slow part: a model call, a render, a payment API
            finally:
                await state.measure.decr(RUNNING)
            return {"pid": os.getpid(), "fence": lease.fence, "slot_lost": lease.lost}
    except SlotTimeout as exc:
        retry = max(1, math.ceil(seconds))
        body = {"error": f"all slots stayed busy for {exc.waited_s:.0f} s; try again in about {retry} s"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(retry)})


@app.get("/status")
async def status() -> dict[str, Any]:
    q = (await state.slots.snapshot())["queues"][QUEUE]
    peak = int(await state.measure.get(PEAK) or 0)
    return {"pid": os.getpid(), "limit": q["limit"], "in_use": q["in_use"], "waiting": q["waiting"], "peak_running": peak}


class Limit(BaseModel):
    limit: int = Field(ge=0, le=10_000)


@app.put("/admin/limit")
async def set_limit(body: Limit, authorization: Annotated[str, Header()] = "") -> dict[str, Any]:
    token = os.environ.get("MW_OPERATOR_TOKEN", "")
    if not token:
        raise HTTPException(403, "the admin route is off: start the app with MW_OPERATOR_TOKEN set")
    if not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        raise HTTPException(401, "send Authorization: Bearer <MW_OPERATOR_TOKEN>")
    await state.slots.set_limit(QUEUE, body.limit)
    await state.measure.delete(PEAK)  # a new limit, a new peak
    return {"pid": os.getpid(), "limit": body.limit}
