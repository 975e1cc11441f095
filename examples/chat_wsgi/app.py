"""A threaded WSGI chat API whose slow "LLM" calls go through a SlotDeck queue.

    .venv/bin/python examples/chat_wsgi/app.py            # http://127.0.0.1:8000
    curl -X POST -d '{"user": "ann", "message": "hi"}' http://127.0.0.1:8000/chat
    curl http://127.0.0.1:8000/status

Every request runs in its own thread (like gunicorn --threads or Flask's dev server). At
most CHAT_SLOTS of them talk to the model at once; up to CHAT_MAX_WAITING more wait their
turn for at most CHAT_WAIT_S; anyone beyond that gets a friendly 503 with Retry-After at
once instead of a hung request.

Settings (environment): CHAT_SLOTS (2), CHAT_MAX_WAITING (10), CHAT_WAIT_S (30),
CHAT_WORK_S (how long the fake model takes, 1.0), CHAT_PORT (8000; 0 picks a free port).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from embedded_service import QueueFull, SlotTimeout
from embedded_service.blocking import BlockingSlotService

SLOTS = int(os.environ.get("CHAT_SLOTS", "2"))
MAX_WAITING = int(os.environ.get("CHAT_MAX_WAITING", "10"))
WAIT_S = float(os.environ.get("CHAT_WAIT_S", "30"))
WORK_S = float(os.environ.get("CHAT_WORK_S", "1.0"))

Start = Callable[[str, list[tuple[str, str]]], Any]


class Running:
    """Counts the model calls running right now and the most ever at once (what the cap promises)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def fake_model(message: str) -> str:
    time.sleep(WORK_S)  # a slow LLM call, in this thread
    return f"you said {message!r}"


def make_app(slots: BlockingSlotService) -> Callable[[dict[str, Any], Start], Iterable[bytes]]:
    running = Running()

    def reply(start: Start, status: str, body: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> list[bytes]:
        data = json.dumps(body).encode()
        start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(headers or [])])
        return [data]

    def busy(start: Start, text: str, retry_s: float | None) -> list[bytes]:
        retry = max(1, math.ceil(retry_s or WORK_S))
        return reply(
            start,
            "503 Service Unavailable",
            {"error": f"{text} Please try again in about {retry} s.", "retry_after_s": retry},
            [("Retry-After", str(retry))],
        )

    def app(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", "/"), environ["REQUEST_METHOD"]
        if path == "/status" and method == "GET":
            q = next(s for s in slots.snapshot().queues if s.config.name == "chat")
            return reply(
                start,
                "200 OK",
                {"slots": q.config.limit, "in_use": q.in_use, "waiting": q.waiting, "peak_running": running.peak},
            )
        if path != "/chat" or method != "POST":
            return reply(start, "404 Not Found", {"error": "POST /chat or GET /status"})
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(size) or b"{}")
            user, message = str(body["user"]), str(body["message"])
        except (ValueError, KeyError, TypeError):
            return reply(start, "400 Bad Request", {"error": 'send JSON {"user": "...", "message": "..."}'})
        asked = time.monotonic()
        try:
            with slots.slot("chat", owner=user, timeout_s=WAIT_S), running:
                waited = time.monotonic() - asked
                answer = fake_model(message)
        except QueueFull as exc:
            text = f"All {SLOTS} chat slots are busy and {exc.waiting} already waiting."
            return busy(start, text, exc.est_wait_s)
        except SlotTimeout as exc:
            return busy(start, f"Still busy after {exc.waited_s:.0f} s of waiting.", exc.est_wait_s)
        return reply(start, "200 OK", {"reply": answer, "waited_s": round(waited, 3)})

    return app


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> int:
    port = int(os.environ.get("CHAT_PORT", "8000"))
    with BlockingSlotService(store="memory://") as slots:
        slots.configure_queue("chat", limit=SLOTS, max_waiting=MAX_WAITING, timeout_s=WAIT_S)
        server = make_server("127.0.0.1", port, make_app(slots), ThreadingWSGIServer, QuietHandler)
        print(f"chat API on http://127.0.0.1:{server.server_port} ({SLOTS} slots, {MAX_WAITING} may wait)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
