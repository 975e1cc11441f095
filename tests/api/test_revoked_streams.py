"""Revoking or replacing a token ends its open `/v1/events` streams at once (real server over loopback)."""

from __future__ import annotations

import sys
import threading
import time

import httpx
import pytest

from tests.api.conftest import Running


def _listen(url: str, token: str, frames: list[str], opened: threading.Event, stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", url + "/v1/events", headers=headers, timeout=httpx.Timeout(10, read=60)) as answer:
        for line in answer.iter_lines():
            frames.append(line)
            opened.set()
            if stop.is_set():
                return
    frames.append("<ended>")


@pytest.mark.parametrize("how", ["delete", "replace"])
def test_a_revoked_tokens_event_stream_ends(running: Running, how: str) -> None:
    with running.http("admin") as admin, running.http("operator") as operator:
        token = admin.post("/v1/tokens", json={"name": "watcher", "role": "viewer"}).json()["token"]
        frames: list[str] = []
        opened, stop = threading.Event(), threading.Event()
        listener = threading.Thread(target=_listen, args=(running.url, token, frames, opened, stop), daemon=True)
        listener.start()
        try:
            assert opened.wait(30), "the stream did not open"
            if how == "delete":
                assert admin.delete("/v1/tokens/watcher").status_code == 204
            else:
                again = admin.post("/v1/tokens", json={"name": "watcher", "role": "viewer", "replace": True})
                assert again.status_code == 201
            revoked_at = len(frames)
            job = operator.post("/v1/jobs", json={"argv": ["true"]}).json()["id"]
            listener.join(30)
            assert not listener.is_alive(), "the revoked token's stream goes on"
            assert frames[-1] == "<ended>"
            assert not any(job in frame for frame in frames[revoked_at:]), "an event reached a revoked token"
        finally:
            stop.set()
            listener.join(30)
        assert httpx.get(running.url + "/v1/snapshot", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_other_streams_go_on(running: Running) -> None:
    frames: list[str] = []
    opened, stop = threading.Event(), threading.Event()
    listener = threading.Thread(
        target=_listen, args=(running.url, running.tokens["viewer"], frames, opened, stop), daemon=True
    )
    listener.start()
    try:
        assert opened.wait(30)
        with running.http("admin") as admin:
            admin.post("/v1/tokens", json={"name": "other", "role": "viewer"})
            assert admin.delete("/v1/tokens/other").status_code == 204
        seen = len(frames)
        deadline = time.monotonic() + 30
        while len(frames) <= seen + 2:  # snapshots keep coming to the viewer whose token stays
            assert time.monotonic() < deadline and listener.is_alive()
            time.sleep(0.05)
        assert "<ended>" not in frames
    finally:
        stop.set()
        listener.join(30)


def test_a_revoked_tokens_log_follow_ends(running: Running) -> None:
    script = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.2)"
    with running.http("admin") as admin, running.http("operator") as operator:
        token = admin.post("/v1/tokens", json={"name": "tailer", "role": "viewer"}).json()["token"]
        job = operator.post("/v1/jobs", json={"argv": [sys.executable, "-c", script]}).json()["id"]
        lines: list[str] = []
        done = threading.Event()

        def follow() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            url = f"{running.url}/v1/jobs/{job}/log?follow=true"
            with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=60)) as answer:
                for line in answer.iter_lines():
                    lines.append(line)
                    if done.is_set():
                        return
            lines.append("<ended>")

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 30
            while "tick" not in lines:
                assert time.monotonic() < deadline, "no output followed"
                time.sleep(0.05)
            assert admin.delete("/v1/tokens/tailer").status_code == 204
            reader.join(30)
            assert not reader.is_alive() and lines[-1] == "<ended>", "the revoked token still reads the log"
        finally:
            done.set()
            operator.post(f"/v1/jobs/{job}/cancel")
            reader.join(30)
