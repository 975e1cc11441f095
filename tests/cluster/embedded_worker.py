"""A web app that embeds `SlotService("redis://...")`, for `uvicorn --workers 4` in test_workers_redis.

Env: SD_URL (the store URL), SD_RAW (the same Redis without namespace, for the test's own counters).
`POST /work`: hold a slot of "llm" for 50 ms, counting bodies at once in Redis (`cur`, its peak in `peak`).
`POST /limit/{n}`: change the limit of "llm" through this worker. Each worker counts itself in `started`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aredis
from fastapi import FastAPI

from embedded_service import SlotService

ENTER = """local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n"""

svc = SlotService(os.environ["SD_URL"])
svc.configure_queue("llm", limit=3, timeout_s=60)
raw = aredis.Redis.from_url(os.environ["SD_RAW"], decode_responses=True)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await svc.start()
    await raw.incr("started")
    yield
    await svc.close()
    await raw.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/work")
async def work() -> dict[str, int]:
    async with svc.slot("llm", owner=f"pid{os.getpid()}"):
        await raw.eval(ENTER, 2, "cur", "peak")
        await asyncio.sleep(0.05)
        await raw.decr("cur")
    return {"pid": os.getpid()}


@app.post("/limit/{n}")
async def limit(n: int) -> dict[str, int]:
    await svc.set_limit("llm", n)
    return {"pid": os.getpid(), "limit": n}
