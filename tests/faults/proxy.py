"""A small TCP proxy for fault injection: it sits between clients and a server on loopback and can go
silent (bytes stop flowing both ways, connections stay open), reset every connection, or delay each chunk.

It runs its own asyncio loop in a daemon thread; the test switches modes from its own thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Any


class FaultProxy:
    """`FaultProxy(target_port).start()`; clients use `proxy.url`; `silent()`, `reset()`, `delay(s)`, `heal()`."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._delay_s = 0.0
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def _call(self, fn: Any, *args: Any) -> None:
        self._loop.call_soon_threadsafe(fn, *args)

    def silent(self) -> None:
        """Stop forwarding (both ways); connections stay open, as a network path that goes dark."""
        self._call(self._flowing.clear)

    def heal(self) -> None:
        """Forward again, without delay."""
        self._delay_s = 0.0
        self._call(self._flowing.set)

    def delay(self, seconds: float) -> None:
        """Hold each chunk this long before forwarding it."""
        self._delay_s = seconds

    def reset(self) -> None:
        """Close every open connection with a TCP reset (new ones are accepted)."""
        self._call(self._reset_all)

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._writers.clear()

    def stop(self) -> None:
        async def close() -> None:
            self._reset_all()
            if self._server is not None:
                self._server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [asyncio.ensure_future(self._pump(reader, up_writer)), asyncio.ensure_future(self._pump(up_reader, writer))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ConnectionError):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                await self._flowing.wait()
                if self._delay_s:
                    await asyncio.sleep(self._delay_s)
                    await self._flowing.wait()
                writer.write(chunk)
                await writer.drain()
