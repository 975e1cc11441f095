"""examples/chat_wsgi does what its README promises: the cap holds (measured peak == CHAT_SLOTS),
waiting is bounded, and the rest get a friendly 503 with Retry-After at once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from example_apps import status_until

APP = Path(__file__).resolve().parents[2] / "examples" / "chat_wsgi" / "app.py"


@pytest.fixture
def chat() -> Iterator[str]:
    env = {**os.environ, "CHAT_PORT": "0", "CHAT_SLOTS": "2", "CHAT_MAX_WAITING": "2", "CHAT_WAIT_S": "120"}
    env["CHAT_WORK_S"] = "8"  # long enough for the test to see every slot and place taken
    proc = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert found, line + proc.stdout.read()  # type: ignore[union-attr]
        yield found.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_cap_holds_waiting_is_bounded_and_the_rest_get_a_friendly_503(chat: str) -> None:
    answers: dict[str, httpx.Response] = {}

    def ask(user: str) -> None:
        answers[user] = httpx.post(f"{chat}/chat", json={"user": user, "message": "hi"}, timeout=120)

    threads = [threading.Thread(target=ask, args=(f"u{i}",)) for i in range(4)]
    for t in threads[:2]:
        t.start()
    status_until(chat, in_use=2)
    for t in threads[2:]:
        t.start()
    status_until(chat, in_use=2, waiting=2)
    turned_away = httpx.post(f"{chat}/chat", json={"user": "late", "message": "hi"}, timeout=30)
    assert turned_away.status_code == 503
    assert int(turned_away.headers["Retry-After"]) >= 1
    body = turned_away.json()
    assert body["error"].startswith("All 2 chat slots are busy and 2 already waiting. Please try again in about")
    assert body["retry_after_s"] == int(turned_away.headers["Retry-After"])
    for t in threads:
        t.join(timeout=120)
    assert sorted(answers) == ["u0", "u1", "u2", "u3"]
    assert all(r.status_code == 200 and r.json()["reply"] == "you said 'hi'" for r in answers.values())
    assert max(r.json()["waited_s"] for r in answers.values()) > 0  # the last two waited their turn
    assert status_until(chat, in_use=0, waiting=0)["peak_running"] == 2  # measured by the app around the model call


def test_bad_requests_are_told_what_to_send(chat: str) -> None:
    bad = httpx.post(f"{chat}/chat", content=b"not json", timeout=10)
    assert bad.status_code == 400 and "user" in bad.json()["error"]
    assert httpx.get(f"{chat}/nowhere", timeout=10).status_code == 404
    assert json.loads(httpx.get(f"{chat}/status", timeout=10).text)["slots"] == 2
