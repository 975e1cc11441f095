"""The operator CLI against a real server over loopback: queues, leases, waiters, jobs, retry,
`submit --wait`, `status --watch`, exit codes, a closed pipe and shell completion."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Literal

import pytest
from pydantic import Field

from embedded_service import cli_queues
from embedded_service.cli import build_parser, main, show_status
from embedded_service.cli_watch import CLEAR_DOWN, HOME, watch
from embedded_service.client import AsyncClient, Client, ConnectionFailed
from embedded_service.client.errors import AuthError
from embedded_service.model import DeviceInfo, HostInfo, Marks, QueueConfig, QueueStats, Snapshot, Totals
from tests.api.conftest import Running


class Cli:
    """`slotdeck ...` run in this process (main()), against the running server, output captured."""

    def __init__(self, running: Running, capsys: pytest.CaptureFixture[str]) -> None:
        self.running = running
        self.capsys = capsys

    def __call__(self, *args: str, who: str = "admin") -> tuple[int, str, str]:
        self.capsys.readouterr()
        argv = [*args, "--url", self.running.url, "--token", self.running.tokens[who]]
        if "--" in args:  # options go before a command's own argv
            cut = args.index("--")
            argv = [*args[:cut], "--url", self.running.url, "--token", self.running.tokens[who], *args[cut:]]
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            rc = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return rc, out, err


@pytest.fixture
def cli(running: Running, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(running, capsys)


def _wait_state(running: Running, job_id: str, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    with running.http("admin") as http:
        while True:
            job = http.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            assert time.monotonic() < deadline, f"job stayed {job['state']}"
            time.sleep(0.05)


# ------------------------------------------------------------------ queues


def test_queue_create_set_show_list_delete_with_every_field(cli: Cli, running: Running) -> None:
    rc, out, _ = cli(
        "queue", "create", "chat", "--limit", "2", "--max-waiting", "5", "--rate", "3", "--burst", "2",
        "--timeout-s", "90", "--stuck-after-s", "600", "--per-gpu", "1", "--paused", "--json",
    )  # fmt: skip
    assert rc == 0
    expected = {
        "name": "chat", "limit": 2, "paused": True, "max_waiting": 5, "timeout_s": 90.0, "rate": 3.0,
        "burst": 2, "stuck_after_s": 600.0, "per_gpu": 1,
    }  # fmt: skip
    got = json.loads(out)
    assert {k: got[k] for k in expected} == expected
    rc, _, err = cli("queue", "create", "chat")
    assert rc == 6 and "already exists" in err and "queue set" in err
    rc, out, _ = cli("queue", "set", "chat", "--max-waiting", "none", "--no-paused", "--limit", "4")
    assert rc == 0 and "max_waiting" in out
    with running.http("admin") as http:
        got = http.get("/v1/queues/chat").json()["config"]
    assert (got["max_waiting"], got["paused"], got["limit"], got["rate"]) == (None, False, 4, 3.0)  # rest unchanged
    rc, out, _ = cli("queue", "show", "chat")
    assert rc == 0 and "1m30s" in out and "3/s" in out and "0/4" in out  # timeout_s 90 and rate in human units
    rc, out, _ = cli("queue", "list")
    assert rc == 0 and "chat" in out and "default" in out and "10m00s" in out  # stuck_after_s 600
    rc, _, err = cli("queue", "set", "chat", "--limit", "-1")
    assert rc == 2 and "limit" in err and "greater than or equal to 0" in err  # the server's 422, as a usage error
    rc, _, err = cli("queue", "set", "chat", "--limit", "many")
    assert rc == 2 and "not a whole number" in err
    rc, _, err = cli("queue", "set", "chat")
    assert rc == 2 and "at least one field" in err
    rc, _, err = cli("queue", "set", "nosuch", "--limit", "1")
    assert rc == 5 and "nosuch" in err and "slotdeck queue create" in err
    rc, _, _ = cli("queue", "create", "chat", "--replace", "--limit", "7")
    with running.http("admin") as http:
        got = http.get("/v1/queues/chat").json()["config"]
    assert rc == 0 and (got["limit"], got["rate"], got["max_waiting"]) == (7, None, None)  # replaced: defaults again
    with running.http("client") as http:
        lease = http.post("/v1/queues/chat/leases", json={"wait_s": 0}).json()["lease"]
    rc, _, err = cli("queue", "delete", "chat")
    assert rc == 6 and "holder" in err
    assert cli("queue", "delete", "chat", "--force")[0] == 0
    assert cli("queue", "show", "chat")[0] == 5
    assert lease["id"]
    assert cli("queue", "create", "x", "--limit", "1", who="viewer")[0] == 4


def test_queue_options_follow_the_model_so_new_fields_need_no_cli_edit(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    subs = {a.dest: a for a in parser._actions if isinstance(a, argparse._SubParsersAction)}["command"].choices
    set_parser = {a.dest: a for a in subs["queue"]._actions if isinstance(a, argparse._SubParsersAction)}[
        "queue_action"
    ].choices["set"]
    dests = {a.dest for a in set_parser._actions}
    assert set(QueueConfig.model_fields) - {"name"} <= dests

    class Wider(QueueConfig):  # a field another change adds to the model
        placement: Literal["spread", "pack"] = Field(default="spread", description="How leases spread over GPUs.")

    monkeypatch.setattr(cli_queues, "QueueConfig", Wider)
    parser = argparse.ArgumentParser()
    cli_queues.add_field_options(parser)
    assert cli_queues.given_fields(parser.parse_args(["--placement", "pack", "--limit", "3"])) == {
        "placement": "pack",
        "limit": 3,
    }
    assert "spread, pack" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--placement", "random"])


# ----------------------------------------------------------- leases, waiters


def test_leases_and_waiters_list_the_ids_cancel_takes(cli: Cli, running: Running) -> None:
    assert cli("limit", "default", "1")[0] == 0
    with running.http("client") as http:
        lease = http.post("/v1/queues/default/leases", json={"owner": "alice", "wait_s": 0}).json()["lease"]
        waiting = http.post("/v1/queues/default/leases", json={"owner": "bob", "wait_s": 0, "ttl_s": 120})
    assert waiting.status_code == 202
    waiter = waiting.json()["waiter"]
    rc, out, _ = cli("leases")
    assert rc == 0 and lease["id"] in out and "alice" in out and "HELD" in out
    rc, out, _ = cli("waiters", "--json")
    assert rc == 0 and [w["id"] for w in json.loads(out)] == [waiter["id"]]
    rc, out, _ = cli("waiters", "--queue", "other")
    assert rc == 0 and waiter["id"] not in out
    assert cli("cancel", "--waiter", waiter["id"])[0] == 0
    assert cli("waiters", "--json")[1].strip() == "[]"
    assert cli("cancel", "--lease", lease["id"])[0] == 0
    assert json.loads(cli("leases", "--json")[1]) == []


# ---------------------------------------------------------------------- jobs


def test_submit_wait_returns_the_jobs_exit_code_and_retry_repeats_it(cli: Cli, running: Running, tmp_path: Any) -> None:
    script = "import os, sys; print(os.environ['GREETING'], os.getcwd()); sys.exit(3)"
    rc, out, err = cli(
        "submit", "--wait", "--env", "GREETING=hello", "--cwd", str(tmp_path), "--max-attempts", "1",
        "--priority", "4", "--", sys.executable, "-c", script,
    )  # fmt: skip
    job_id = out.strip()
    assert rc == 3 and "failed (exit 3)" in err
    rc, out, _ = cli("job", "show", job_id)
    assert rc == 0 and "exit code    3" in out and "attempts     1 of 1" in out and "GREETING=…" in out
    assert "hello" not in out  # env values may be secrets: names only
    rc, _, err = cli("cancel", job_id)
    assert rc == 6 and "already finished (failed)" in err
    rc, out, err = cli("retry", job_id, "--wait")
    new_id = out.strip()
    assert rc == 3 and new_id != job_id
    new = _wait_state(running, new_id, {"failed"})
    old = _wait_state(running, job_id, {"failed"})
    for field in ("argv", "env", "cwd", "queue", "gpus", "gpu_mem_mib", "priority", "max_attempts", "max_runtime_s"):
        assert new[field] == old[field], field
    assert cli("log", new_id)[1] == f"hello {tmp_path}\n"
    rc, out, _ = cli("log", new_id, "--json")
    assert rc == 0 and json.loads(out) == {"job": new_id, "log": f"hello {tmp_path}\n"}
    rc, out, _ = cli("submit", "--wait", "--json", "--", sys.executable, "-c", "pass")
    assert rc == 0 and json.loads(out)["state"] == "succeeded"
    rc, out, _ = cli("submit", "--wait", "--max-runtime-s", "0.5", "--", sys.executable, "-c", "import time; time.sleep(30)")
    assert rc == 124
    assert cli("retry", "no-such-job")[0] == 5


def test_retry_route_rules_roles_audit_and_clients(running: Running) -> None:
    with running.http("client") as mine, running.http("client2") as other, running.http("viewer") as viewer:
        job = mine.post("/v1/jobs", json={"argv": [sys.executable, "-c", "import time; time.sleep(30)"]}).json()
        _wait_state(running, job["id"], {"running"})
        busy = mine.post(f"/v1/jobs/{job['id']}/retry")
        assert busy.status_code == 409 and busy.json()["code"] == "job_not_finished"
        mine.post(f"/v1/jobs/{job['id']}/cancel")
        assert other.post(f"/v1/jobs/{job['id']}/retry").status_code == 404  # clients see only their own
        assert viewer.post(f"/v1/jobs/{job['id']}/retry").status_code == 403
        again = mine.post(f"/v1/jobs/{job['id']}/retry")
        assert again.status_code == 201
        body = again.json()
        assert body["id"] != job["id"] and body["state"] in ("queued", "running") and body["owner"] == "client"
        assert body["argv"] == job["argv"] and body["attempts"] in (0, 1)
        mine.post(f"/v1/jobs/{body['id']}/cancel")
    with running.http("operator") as op:
        by_operator = op.post(f"/v1/jobs/{job['id']}/retry").json()
        op.post(f"/v1/jobs/{by_operator['id']}/cancel")
        audit = op.get("/v1/audit").json()
    retries = [e for e in audit if e["action"] == "job.retry"]
    assert {(e["actor"], e["target"]) for e in retries} == {("client", job["id"]), ("operator", job["id"])}
    assert {e["after"]["job"] for e in retries} == {body["id"], by_operator["id"]}
    with Client(running.url, running.tokens["admin"]) as c:
        sync_retry = c.retry(job["id"])
        c.cancel_job(sync_retry.id)
    assert sync_retry.argv == job["argv"]

    async def via_async() -> str:
        async with AsyncClient(running.url, running.tokens["admin"]) as ac:
            j = await ac.retry(job["id"])
            await ac.cancel_job(j.id)
            return j.id

    import asyncio

    assert asyncio.run(via_async()) not in (job["id"], sync_retry.id)


# ------------------------------------------------------------ status, watch


def _snapshot() -> Snapshot:
    stats = QueueStats(
        config=QueueConfig(name="chat", limit=6),
        in_use=3,
        waiting=2,
        owners=2,
        marks=Marks(in_use=4, waiting=6),
        totals=Totals(granted=10),
        est_wait_s=75.0,
    )
    gpu = DeviceInfo(
        index=0, name="H100", memory_total_mib=81_559, memory_used_mib=40_960, utilization_pct=50.88064657028872
    )
    host = HostInfo(cpu_pct=12.3456, memory_total_mib=16_000, memory_used_mib=3_300, load_1m=0.52)
    return Snapshot(seq=1, at=time.time(), queues=[stats], devices=[gpu], host=host)


def test_status_text_is_in_human_units_and_json_exact() -> None:
    text = show_status(_snapshot())
    assert "51%" in text and "50.8" not in text
    assert "40.0/79.6 GiB" in text and "1m15s" in text and "cpu 12%" in text and "3.2/15.6 GiB" in text
    header = text.splitlines()[0]
    assert "PEAK USE" in header and "PEAK WAIT" in header and "MARKS" not in header
    row = text.splitlines()[1].split()
    assert row[:6] == ["chat", "3/6", "2", "4", "6", "10"]


def test_human_units() -> None:
    from embedded_service import cli_format as fmt

    assert [fmt.duration(x) for x in (0.42, 12, 75, 3725, 90_000)] == ["0.4s", "12s", "1m15s", "1h02m", "1d01h"]
    assert (fmt.mib(512), fmt.mib(8192), fmt.pct(99.5), fmt.pct(None)) == ("512 MiB", "8.0 GiB", "100%", None)
    halves = (fmt.used_of(None, 8192), fmt.used_of(100, None), fmt.used_of(100, 900))
    assert halves == ("?/8.0 GiB", "100 MiB/?", "100/900 MiB")
    assert fmt.within(100.0, 160.0) == "overdue" and fmt.within(190.0, 160.0) == "in 30s"


def test_status_watch_redraws_in_place_and_survives_a_failed_read() -> None:
    out = io.StringIO()
    sleeps: list[float] = []
    reads = iter([_snapshot(), ConnectionFailed("cannot reach SlotDeck at x"), _snapshot()])

    def read() -> Snapshot:
        item = next(reads)
        if isinstance(item, Exception):
            raise item
        return item

    rc = watch(read, show_status, url="http://x", interval_s=0.01, count=3, out=out, ansi=True, sleep=sleeps.append)
    text = out.getvalue()
    assert rc == 0 and text.count(HOME) == 4 and text.endswith("\x1b[?25h") and CLEAR_DOWN in text
    assert sleeps == [0.5, 0.5]  # bounded: never faster than twice a second
    assert "cannot read the status: cannot reach SlotDeck" in text and text.count("51%") == 2

    def unauthorised() -> Snapshot:
        raise AuthError(401, "Unknown token")

    with pytest.raises(AuthError):
        watch(unauthorised, show_status, url="http://x", interval_s=1, count=1, out=io.StringIO(), ansi=False)


# --------------------------------------------------- exit codes, pipes, help


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SLOTDECK_")} | {"SLOTDECK_HOME": "/nonexistent"}


def test_exit_codes_for_usage_connect_auth_and_role(cli: Cli, running: Running) -> None:
    rc, _, err = cli("limit", "default", "-1")
    assert rc == 2 and "invalid value: limit" in err
    assert main(["status", "--url", "foo"]) == 2
    assert main(["status", "--url", "http://127.0.0.1:9"]) == 3
    rc, _, err = cli("status")
    assert rc == 0
    assert main(["status", "--url", running.url, "--token", "sdk_wrong"]) == 4
    err = cli.capsys.readouterr().err
    assert "--token" in err and "SLOTDECK_TOKEN" in err
    rc, _, err = cli("limit", "default", "3", who="viewer")
    assert rc == 4 and "role" in err
    assert cli("job", "show", "nope")[0] == 5


def test_help_documents_exit_codes_and_every_option_has_help() -> None:
    parser = build_parser()
    assert "exit codes:" in parser.format_help() and "422" in parser.format_help()
    from embedded_service.cli_completion import walk

    missing = [
        f"{path} {action.option_strings or action.dest}"
        for path, sub in walk(parser).items()
        for action in sub._actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    ]
    assert missing == []


def test_a_closed_pipe_ends_quietly(running: Running) -> None:
    with running.http("client") as http:
        for _ in range(3):
            http.post("/v1/jobs", json={"argv": [sys.executable, "-c", "pass"]})
    reader, writer = os.pipe()
    os.close(reader)  # like `| head` that has already exited
    proc = subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", "jobs", "--url", running.url, "--token", running.tokens["admin"]],
        stdout=writer,
        stderr=subprocess.PIPE,
        env=_env(),
        text=True,
        timeout=60,
    )
    os.close(writer)
    assert proc.returncode == 0 and proc.stderr == ""


def test_status_watch_as_a_command_shows_the_holders(running: Running) -> None:
    with running.http("client") as http:
        lease = http.post("/v1/queues/default/leases", json={"owner": "trainer", "wait_s": 0}).json()["lease"]
    args = [
        "status",
        "--watch",
        "--count",
        "2",
        "--interval",
        "0.5",
        "--url",
        running.url,
        "--token",
        running.tokens["viewer"],
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", *args], capture_output=True, env=_env(), text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.count("slotdeck status  http://") == 2 and "\x1b[" not in proc.stdout
    assert proc.stdout.count(lease["id"]) == 2 and "trainer" in proc.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_completes_commands_fields_and_choices() -> None:
    script = subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", "completion", "bash"], capture_output=True, text=True, env=_env()
    ).stdout

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        program = (
            f'{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _slotdeck; printf "%s\\n" "${{COMPREPLY[@]}}"'
        )
        done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("slotdeck", "qu") == ["queue"]
    assert sorted(complete("slotdeck", "queue", "s")) == ["set", "show"]
    assert "--max-waiting" in complete("slotdeck", "queue", "set", "chat", "--max")
    assert complete("slotdeck", "jobs", "--state", "f") == ["failed"]
    assert "--wait" in complete("slotdeck", "submit", "--wa")
    zsh = subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", "completion", "zsh"], capture_output=True, text=True, env=_env()
    )
    assert zsh.returncode == 0 and "bashcompinit" in zsh.stdout and "_slotdeck" in zsh.stdout
    if shutil.which("zsh"):
        assert subprocess.run(["zsh", "-c", zsh.stdout], capture_output=True, timeout=30).returncode == 0


def test_url_without_scheme_is_a_usage_error_not_cannot_reach() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", "jobs", "--url", "foo"],
        capture_output=True,
        env=_env(),
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "not a server URL" in proc.stderr and "cannot reach" not in proc.stderr


def test_an_option_before_the_command_is_told_where_it_goes(capsys: pytest.CaptureFixture[str]) -> None:
    # `slotdeck --url URL status` (the order curl and git teach) said "invalid choice: 'URL'" (newcomer pass, issue 16)
    assert main(["--url", "http://127.0.0.1:1", "status"]) == 2
    err = capsys.readouterr().err
    assert "after the command" in err and "slotdeck status --url" in err and "invalid choice" not in err
