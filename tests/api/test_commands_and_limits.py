"""Running commands is its own permission; job environments are minimal; limits come before work."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from embedded_service.api.commands import AllowListError, CommandPolicy, load_allowlist, parse_rules
from embedded_service.api.embedded import EmbeddedServer
from embedded_service.api.events import EventBroker
from embedded_service.jobs import JobSettings
from tests.api.conftest import Running
from tests.api.test_cli_and_server import _serve, home  # noqa: F401  (home is a fixture)

ESCALATE = [sys.executable, "-m", "embedded_service.cli", "token", "create", "--role", "admin", "--name", "x"]


def _server(tmp_path: Path, commands: CommandPolicy | None = None, **kwargs) -> EmbeddedServer:  # type: ignore[no-untyped-def]
    return EmbeddedServer(
        f"sqlite:///{tmp_path / 's.db'}", probes=False, write_local=False, grace_s=0.5, commands=commands, **kwargs
    )


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[Running]:
    server = _server(tmp_path).start()
    try:
        yield Running(server)
    finally:
        server.stop()


def _finished(http: httpx.Client, job_id: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 30
    while (job := http.get(f"/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return job


def test_by_default_a_client_cannot_run_commands_but_operators_can(default_server: Running) -> None:
    with default_server.http("client") as client, default_server.http("operator") as operator:
        denied = client.post("/v1/jobs", json={"argv": ESCALATE})
        assert denied.status_code == 403 and "allow-list" in denied.json()["detail"]
        assert client.get("/v1/jobs").json()["jobs"] == [], "nothing was stored"
        job = operator.post("/v1/jobs", json={"argv": [sys.executable, "-c", "print('ok')"]}).json()
        assert _finished(operator, job["id"])["state"] == "succeeded"


def test_an_allow_listed_command_runs_for_a_client_and_its_variables_and_cwd_are_checked(tmp_path: Path) -> None:
    allow = tmp_path / "allow.toml"
    allow.write_text(
        f"""
[[allow]]
prefix = [{json.dumps(sys.executable)}, "-c", "print('allowed')"]

[[allow]]
pattern = [{json.dumps(sys.executable)}, "-c", "print(*)", "**"]
env = ["OMP_*"]
cwd = [{json.dumps(str(tmp_path) + "/*")}]
tokens = ["client2"]
"""
    )
    server = _server(tmp_path, load_allowlist(allow)).start()
    running = Running(server)
    try:
        with running.http("client") as client, running.http("client2") as client2:
            ok = client.post("/v1/jobs", json={"argv": [sys.executable, "-c", "print('allowed')"]})
            assert ok.status_code == 201 and _finished(client, ok.json()["id"])["state"] == "succeeded"
            assert client.get(f"/v1/jobs/{ok.json()['id']}/log").text == "allowed\n"
            assert client.post("/v1/jobs", json={"argv": ESCALATE}).status_code == 403
            # an allowed argv with a variable the rule does not allow could load anything: refused
            poisoned = {"argv": [sys.executable, "-c", "print('allowed')"], "env": {"PYTHONSTARTUP": "/tmp/x.py"}}
            assert client.post("/v1/jobs", json=poisoned).status_code == 403
            assert client.post("/v1/jobs", json={**poisoned, "env": {}, "cwd": "/"}).status_code == 403
            (tmp_path / "work").mkdir()
            second = {"argv": [sys.executable, "-c", "print(2)", "extra"], "env": {"OMP_NUM_THREADS": "1"}}
            assert client.post("/v1/jobs", json=second).status_code == 403, "rule 2 is client2's only"
            assert client2.post("/v1/jobs", json={**second, "cwd": str(tmp_path / "work")}).status_code == 201
            assert client2.post("/v1/jobs", json={**second, "cwd": "/etc"}).status_code == 403
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[allow]]\nprefix = []", "must name a program"),
        ('[[allow]]\nprefix = ["a"]\npattern = ["b"]', "exactly one of prefix and pattern"),
        ('[[allow]]\npattern = ["a", "**", "b"]', "only be the last"),
        ('[[allow]]\nprefix = ["a"]\nshell = true', "unknown key(s) shell"),
        ('[[rule]]\nprefix = ["a"]', "unknown key(s) rule"),
    ],
)
def test_bad_allow_lists_are_refused_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    import tomllib

    with pytest.raises(AllowListError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_rules(tomllib.loads(text))
    with pytest.raises(AllowListError, match="cannot read"):
        load_allowlist(tmp_path / "missing.toml")


def test_a_command_job_does_not_inherit_the_services_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTDECK_TEST_SERVICE_ONLY", "service-secret")
    monkeypatch.setenv("SLOTDECK_TEST_PASSED", "passed-on")
    show = "import os; print(sorted(k for k in os.environ if k.startswith(('SLOTDECK_TEST', 'MINE', 'PATH'))))"
    outputs = []
    for jobs in (JobSettings(), JobSettings(pass_env=("SLOTDECK_TEST_PASS*",))):
        server = _server(tmp_path, jobs=jobs, log_dir=tmp_path / "logs").start()
        running = Running(server)
        try:
            with running.http("operator") as op:
                job = op.post("/v1/jobs", json={"argv": [sys.executable, "-c", show], "env": {"MINE": "1"}}).json()
                assert _finished(op, job["id"])["state"] == "succeeded"
                outputs.append(op.get(f"/v1/jobs/{job['id']}/log").text.strip())
        finally:
            server.stop()
    assert outputs[0] == "['MINE', 'PATH']"
    assert outputs[1] == "['MINE', 'PATH', 'SLOTDECK_TEST_PASSED']", "an option widens it"


BODY_ROUTES = [
    ("POST", "/v1/jobs"),
    ("POST", "/v1/tokens"),
    ("PUT", "/v1/queues/q"),
    ("PATCH", "/v1/queues/default"),
    ("POST", "/v1/queues/default/leases"),
    ("POST", "/v1/leases/x/renew"),
]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_every_route_answers_401_before_it_reads_a_body(default_server: Running, method: str, path: str) -> None:
    headers = {"Content-Type": "application/json"}
    with default_server.http() as anonymous, default_server.http("viewer") as viewer:
        assert anonymous.request(method, path, content=b"{not json", headers=headers).status_code == 401
        assert anonymous.request(method, path, json={"bogus": 1}).status_code == 401
        if path != "/v1/queues/default/leases" and not path.startswith("/v1/leases"):
            assert viewer.request(method, path, content=b"{not json", headers=headers).status_code == 403


def test_argv_and_env_sizes_are_capped(default_server: Running) -> None:
    with default_server.http("operator") as op:
        for body in (
            {"argv": ["true"] * 5000},
            {"argv": ["true", "x" * 40_000]},
            {"argv": ["true"], "env": {f"K{i}": "v" for i in range(300)}},
            {"argv": ["true"], "env": {"K": "v" * 40_000}},
            {"argv": ["true"], "env": {f"K{i}": "v" * 30_000 for i in range(10)}},
            {"argv": ["true"], "env": {"A=B": "v"}},
        ):
            answer = op.post("/v1/jobs", json=body)
            assert answer.status_code == 422, body.keys()


def _raw_request(url: str, head: str, body_bytes: int, chunked: bool) -> int:
    """Send a request with up to `body_bytes` of body over a plain socket; the status the server answers."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode())
        block = b"x" * (1 << 20)
        sent = 0
        try:
            while sent < body_bytes:
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block)
                sent += len(block)
        except OSError:  # the server answered and closed: it does not read what it refuses
            pass
        sock.settimeout(30)
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1])


def test_big_bodies_get_413_without_the_server_growing(home: dict[str, str]) -> None:  # noqa: F811
    proc, url = _serve(home)
    try:
        token = json.loads((Path(home["SLOTDECK_HOME"]) / "local.json").read_text())["token"]
        server = psutil.Process(proc.pid)
        before = server.memory_info().rss
        host = urlsplit(url).netloc
        size = 200 * 1024 * 1024
        for auth in ("", f"Authorization: Bearer {token}\r\n"):
            declared = f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n"
            assert _raw_request(url, declared + f"Content-Length: {size}\r\n\r\n", size, chunked=False) == 413
            streamed = declared + "Transfer-Encoding: chunked\r\n\r\n"
            assert _raw_request(url, streamed, size, chunked=True) == (413 if auth else 401)
        grown_mib = (server.memory_info().rss - before) / 2**20
        print(f"server RSS grew {grown_mib:.1f} MiB after 4 x 200 MiB bodies")
        assert grown_mib < 100, f"the server grew {grown_mib:.0f} MiB"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            small = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", "pass"]})
            assert small.status_code == 201, "normal bodies still pass"
            big = http.post("/v1/jobs", json={"argv": ["true"], "env": {"K": "v" * (5 * 1024 * 1024)}})
            assert big.status_code == 413 and big.headers["content-type"] == "application/problem+json"
            assert big.json()["title"] == "Request body too large"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_event_replay_is_bounded_in_bytes_as_well_as_in_count(tmp_path: Path) -> None:
    from embedded_service import SlotService
    from embedded_service.api.snapshots import SnapshotCache

    svc = SlotService()
    broker = EventBroker(svc, SnapshotCache(svc), replay_bytes=1024 * 1024)
    for i in range(100):
        broker.publish("job", {"job": {"id": f"j{i}", "blob": "x" * 100_000}})
    events, size = broker.replay_size
    assert size <= 1024 * 1024 and 5 <= events <= 11
    assert size == sum(len(frame) for _, _, frame, _ in broker._replay)
    for i in range(5000):
        broker.publish("lease", {"n": i})
    assert broker.replay_size[0] == 4096


def test_the_default_policy_is_empty() -> None:
    assert CommandPolicy().rules == ()
    assert os.environ.get("SLOTDECK_COMMAND_ALLOWLIST") is None


def test_serve_refuses_an_allow_list_it_cannot_use_in_one_line(home: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    from tests.api.test_cli_and_server import slotdeck

    missing = slotdeck("serve", "--port", "0", "--no-probes", "--command-allowlist", str(tmp_path / "no.toml"), env=home)
    assert missing.returncode == 2 and "cannot read command allow-list" in missing.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[allow]]\nprefix = ["python3"]\nshell = true\n')
    refused = slotdeck("serve", "--port", "0", "--no-probes", "--command-allowlist", str(bad), env=home)
    assert refused.returncode == 2 and "unknown key(s) shell" in refused.stderr and "Traceback" not in refused.stderr


def test_serve_job_env_pass_widens_the_job_environment(home: dict[str, str]) -> None:  # noqa: F811
    env = {**home, "SLOTDECK_TEST_PASSED": "yes", "SLOTDECK_TEST_KEPT": "service-only"}
    proc, url = _serve(env, "--job-env-pass", "SLOTDECK_TEST_PASS*")
    try:
        token = json.loads((Path(home["SLOTDECK_HOME"]) / "local.json").read_text())["token"]
        show = "import os; print(sorted(k for k in os.environ if k.startswith('SLOTDECK_TEST')))"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            job = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", show]}).json()
            assert _finished(http, job["id"])["state"] == "succeeded"
            assert http.get(f"/v1/jobs/{job['id']}/log").text.strip() == "['SLOTDECK_TEST_PASSED']"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
