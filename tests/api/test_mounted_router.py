"""The API as a router mounted into someone else's FastAPI app under /slots, served over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from embedded_service.api import router
from embedded_service.service import SlotService
from embedded_service.stores import SqliteStore


def test_router_under_a_prefix_starts_serves_and_closes_the_service(tmp_path: Path) -> None:
    svc = SlotService(store=f"sqlite:///{tmp_path}/mounted.db", sample_interval_s=3600)
    host = FastAPI()

    @host.get("/own")
    async def own() -> dict[str, str]:
        return {"app": "host"}

    host.include_router(router(svc, auth=False, grace_s=0), prefix="/slots")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(host, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    assert svc.started_at is None
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        assert svc.started_at is not None, "the router's lifespan started the service"
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=10) as http:
            assert http.get("/own").json() == {"app": "host"}
            assert http.get("/slots/v1/health").json()["status"] == "ok"
            assert http.put("/slots/v1/queues/chat", json={"limit": 2}).json()["limit"] == 2
            granted = http.post("/slots/v1/queues/chat/leases", json={})
            assert granted.status_code == 201
            assert http.delete(f"/slots/v1/leases/{granted.json()['lease']['id']}").status_code == 204
            unknown = http.patch("/slots/v1/queues/nope", json={"limit": 1})
            assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
            assert unknown.json()["code"] == "unknown_queue"
            assert [e["action"] for e in http.get("/slots/v1/audit").json()] == ["queue.create"]
            assert "/slots/v1/snapshot" in http.get("/openapi.json").json()["paths"]
    finally:
        server.should_exit = True
        thread.join(20)
    assert not thread.is_alive()

    async def saved() -> tuple[int, int]:
        store = SqliteStore(f"sqlite:///{tmp_path}/mounted.db")
        await store.open()
        try:
            limits = {q.name: q.limit for q in await store.load_queues()}
            return limits["chat"], (await store.load_queue_state())["chat"][1].released
        finally:
            await store.close()

    # totals are saved on a sample tick (hourly here) or at close: the lifespan closed the service it started
    assert asyncio.run(saved()) == (2, 1)


def test_a_router_built_before_a_restart_has_started_the_service_serves_snapshots(tmp_path: Path) -> None:
    """An app module configures its queues and builds `router(svc)` at import, before its lifespan starts the
    service: the router's metrics take a snapshot then, and the totals restored afterwards must not break
    every later snapshot (an IndexError in every /v1/snapshot, /metrics and svc.snapshot() did)."""
    url = f"sqlite:///{tmp_path}/restarted.db"

    async def first_run() -> None:
        async with SlotService(store=url, sample_interval_s=3600) as svc:
            svc.configure_queue("chat", limit=2)
            for _ in range(3):
                async with svc.slot("chat"):
                    pass

    asyncio.run(first_run())
    svc = SlotService(store=url, sample_interval_s=3600)
    svc.configure_queue("chat", limit=2)  # an app module's code, at import time
    router(svc, auth=False)  # as `app.include_router(router(svc))` there

    async def second_run() -> None:
        async with svc:
            chat = next(q for q in svc.snapshot().queues if q.config.name == "chat")
            assert (chat.totals.granted, chat.totals.released, chat.wait_p50_s, chat.hold_p50_s) == (3, 3, None, None)
            async with svc.slot("chat"):
                await asyncio.sleep(0.01)
            chat = next(q for q in svc.snapshot().queues if q.config.name == "chat")
            assert chat.totals.granted == 4 and chat.wait_p50_s is not None and chat.hold_p50_s is not None
            assert chat.hold_p50_s >= 0.01  # only the one hold of this run is sampled

    asyncio.run(second_run())


async def test_a_router_built_before_a_restart_restores_totals_serves_snapshots(tmp_path: Path) -> None:
    """Building the router reads a snapshot (the metrics registry collects once to learn its names) before the
    service starts; the totals restored at start then jumped past the samples the snapshot had seen, and every
    snapshot failed with IndexError (500 on /v1/snapshot) until 16 more grants (found by the issue-16 newcomer pass)."""
    url = f"sqlite:///{tmp_path}/restart.db"
    async with SlotService(store=url, sample_interval_s=3600) as first:
        first.configure_queue("infer", limit=6)
        for _ in range(8):
            async with first.slot("infer"):
                pass
    svc = SlotService(store=url, sample_interval_s=3600)
    svc.configure_queue("infer", limit=6)
    router(svc, auth=False, grace_s=0)
    async with svc:
        (queue,) = svc.snapshot().queues
        assert queue.totals.granted == 8 and queue.wait_p50_s is None
        async with svc.slot("infer"):
            pass
        (queue,) = svc.snapshot().queues
        assert queue.totals.granted == 9 and queue.wait_p50_s is not None
