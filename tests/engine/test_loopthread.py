"""`LoopThread`, the one host of "a service on a background thread" (BlockingSlotService, EmbeddedServer)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from embedded_service.api.embedded import EmbeddedServer
from embedded_service.blocking import BlockingSlotService
from embedded_service.errors import StoreLocked
from embedded_service.loopthread import LoopThread


def test_start_raises_what_main_raised_before_it_was_ready() -> None:
    async def main(ready: Callable[[], None]) -> None:
        raise OSError("port taken")

    host = LoopThread("t")
    with pytest.raises(OSError, match="port taken"):
        host.start(main, timeout=10)
    host.join(10)
    assert not host.running


def test_start_refuses_a_main_that_ended_without_being_ready() -> None:
    async def main(ready: Callable[[], None]) -> None:
        return None

    with pytest.raises(RuntimeError, match="stopped before it was ready"):
        LoopThread("t", "the thing").start(main, timeout=10)


def test_a_call_given_up_cancels_its_coroutine_and_a_stopped_host_refuses_calls() -> None:
    stop = threading.Event()
    cancelled = threading.Event()

    async def main(ready: Callable[[], None]) -> None:
        ready()
        while not stop.is_set():
            await asyncio.sleep(0.01)

    async def slow() -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    host = LoopThread("t")
    host.start(main, timeout=10)
    try:
        with pytest.raises(TimeoutError):
            host.call(slow(), timeout=0.05)
        assert cancelled.wait(5)
        assert host.call(asyncio.sleep(0, result=7), timeout=5) == 7
    finally:
        stop.set()
        host.join(10)
    assert not host.running
    with pytest.raises(RuntimeError, match="not started"):
        host.call(asyncio.sleep(0))


def test_both_hosts_report_a_store_owned_by_another_process_at_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/x.db"
    with BlockingSlotService(store=url) as owner:
        assert owner.service.started_at is not None
        with pytest.raises(StoreLocked):
            BlockingSlotService(store=url).start()
        with pytest.raises(StoreLocked):
            EmbeddedServer(url, probes=False, write_local=False).start(timeout=30)
