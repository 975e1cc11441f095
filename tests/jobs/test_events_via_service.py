"""Job events reach `SlotService.events()` subscribers through the service (`publish`), in order with the
engine's own events; the engine is listened to only while someone subscribes."""

from __future__ import annotations

import asyncio
from typing import Any

from jobhelpers import wait_job

from embedded_service import SlotService
from embedded_service.model import JobState


async def test_job_and_engine_events_reach_subscribers_through_the_service(svc: SlotService) -> None:
    @svc.task("noop")
    def noop() -> int:
        return 1

    seen: list[tuple[str, dict[str, Any]]] = []
    subscribed = asyncio.Event()

    async def watch() -> None:
        stream = svc.events()
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        subscribed.set()
        seen.append(await first)
        async for event in stream:
            seen.append(event)

    watcher = asyncio.create_task(watch())
    await subscribed.wait()
    assert svc.watched() and svc.engine.listeners.count(svc.publish) == 1
    job = await svc.submit("noop")
    assert (await wait_job(svc, job.id)).state is JobState.succeeded
    for _ in range(50):
        if any(e == "job" and f["job"]["state"] == "succeeded" for e, f in seen):
            break
        await asyncio.sleep(0.02)
    kinds = [event for event, _ in seen]
    states = [fields["job"]["state"] for event, fields in seen if event == "job"]
    assert "granted" in kinds and "released" in kinds
    assert states[0] == "queued" and states[-1] == "succeeded" and "running" in states
    assert kinds.index("granted") < len(kinds) - 1 - kinds[::-1].index("job")  # one stream, in order
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert not svc.watched() and svc.publish not in svc.engine.listeners


async def test_without_subscribers_no_job_event_is_built(svc: SlotService, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    @svc.task("noop")
    def noop() -> int:
        return 1

    published: list[str] = []
    monkeypatch.setattr(svc, "publish", lambda event, fields: published.append(event))
    job = await svc.submit("noop")
    assert (await wait_job(svc, job.id)).state is JobState.succeeded
    assert published == []
