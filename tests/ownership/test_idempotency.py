"""`Idempotency-Key` on `POST /v1/jobs`, against a real `slotdeck serve`: a repeated key gets the first job back,
the key survives a restart, and the clients' retry of a submit whose connection broke makes one job, not two."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from pathlib import Path

import httpx
import pytest

from embedded_service.client import AsyncClient, Client

from .serving import Serve, cli, home_env, jobs


class BreakingProxy:
    """A TCP proxy to the server that, while armed, forwards one `POST /v1/jobs` and then cuts the connection
    as the server's answer starts to arrive: the submit was committed, but the client never hears so."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.armed = threading.Event()
        self.broken = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._connection, args=(client, server), daemon=True).start()

    def _connection(self, client: socket.socket, server: socket.socket) -> None:
        submit_seen = threading.Event()

        def upward() -> None:
            try:
                while data := client.recv(65536):
                    if b"POST /v1/jobs " in data:
                        submit_seen.set()
                    server.sendall(data)
            except OSError:
                pass

        threading.Thread(target=upward, daemon=True).start()
        try:
            while data := server.recv(65536):
                if submit_seen.is_set() and self.armed.is_set():
                    self.armed.clear()
                    self.broken += 1
                    break  # the answer never reaches the client
                client.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._stop = True
        self.listener.close()


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    running = Serve(home_env(tmp_path / "home")).wait_serving()
    with running.http() as http:
        http.post("/v1/queues/default/pause")  # the jobs stay queued: only their count matters here
    yield running
    running.stop()


def test_a_retried_submit_whose_connection_broke_makes_one_job(server: Serve) -> None:
    proxy = BreakingProxy(server.url)
    try:
        proxy.armed.set()
        with Client(proxy.url, server.token) as c:
            job = c.submit_command(["true"])
        assert proxy.broken == 1  # the first answer was really lost

        proxy.armed.set()

        async def submit_command_async() -> str:
            async with AsyncClient(proxy.url, server.token) as ac:
                return (await ac.submit_command(["true"])).id

        async_id = asyncio.run(submit_command_async())
        assert proxy.broken == 2
    finally:
        proxy.close()
    with server.http() as http:
        assert sorted(j["id"] for j in jobs(http)) == sorted([job.id, async_id])  # one job per submit, not two


def test_the_same_key_returns_the_first_job_per_caller_and_across_a_restart(tmp_path: Path) -> None:
    env = home_env(tmp_path / "home")
    first = Serve(env).wait_serving()
    try:
        other = cli("token", "create", "--role", "operator", "--name", "other", env=env)  # commands need operator
        assert other.returncode == 0, other.stderr
        other_token = other.stdout.strip()
        with first.http() as http:
            http.post("/v1/queues/default/pause")
            body = {"argv": ["true"]}
            made = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
            again = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
            assert (made.status_code, again.status_code) == (201, 200)
            assert again.json()["id"] == made.json()["id"] and again.json()["idempotency_key"] == "k-1"
            fresh = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-2"})
            assert fresh.status_code == 201 and fresh.json()["id"] != made.json()["id"]
            bad = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "x" * 201})
            assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        with httpx.Client(base_url=first.url, headers={"Authorization": f"Bearer {other_token}"}) as theirs:
            own = theirs.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
            assert own.status_code == 201 and own.json()["id"] != made.json()["id"]  # keys are per caller
    finally:
        assert first.stop() == 0
    second = Serve(env).wait_serving()
    try:
        with second.http() as http:
            after = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
            assert after.status_code == 200 and after.json()["id"] == made.json()["id"]  # stored durably
            assert len(jobs(http)) == 3
    finally:
        assert second.stop() == 0
    assert json.loads((tmp_path / "home" / "local.json").read_text())["token"] == second.token


def test_a_key_reused_for_a_different_submit_is_refused_not_answered_with_the_first_job(tmp_path: Path) -> None:
    """A key names one request: the same key with another command must not quietly answer with the first job
    (the caller would believe `false` was queued while only `true` ever runs)."""
    server = Serve(home_env(tmp_path / "home")).wait_serving()
    try:
        with server.http() as http:
            assert http.patch("/v1/queues/default", json={"paused": True}).status_code == 200
            first = http.post("/v1/jobs", json={"argv": ["true"]}, headers={"Idempotency-Key": "k-reused"})
            assert first.status_code == 201
            same = http.post("/v1/jobs", json={"argv": ["true"]}, headers={"Idempotency-Key": "k-reused"})
            assert (same.status_code, same.json()["id"]) == (200, first.json()["id"])  # a true retry: the first job
            other = http.post("/v1/jobs", json={"argv": ["false"]}, headers={"Idempotency-Key": "k-reused"})
            assert other.status_code == 422, other.text
            assert other.headers["content-type"] == "application/problem+json"
            assert "k-reused" in other.json()["detail"] and first.json()["id"] in other.json()["detail"]
            assert [job["argv"] for job in jobs(http)] == [["true"]]  # nothing new was queued
        assert server.stop() == 0
    finally:
        server.kill()


def test_two_idempotency_keys_on_one_submit_are_refused_not_one_picked(server: Serve) -> None:
    """A proxy that adds a key, or a client that sets one twice: which key names the request is unknown, so the
    submit is refused (422) rather than keyed by whichever header came first, and nothing is queued."""
    with server.http() as http:
        twice = http.post(
            "/v1/jobs", json={"argv": ["true"]}, headers=[("Idempotency-Key", "k-one"), ("Idempotency-Key", "k-two")]
        )
        assert twice.status_code == 422, twice.text
        assert "one Idempotency-Key" in twice.json()["detail"]
        assert jobs(http) == []
        once = http.post("/v1/jobs", json={"argv": ["true"]}, headers={"Idempotency-Key": "k-one"})
        assert once.status_code == 201  # the refused submit did not take the key
