"""Jobs over HTTP: submit (task and command), list, read, cancel, log tail and follow; clients see their own."""

from __future__ import annotations

import sys
import time

import pytest

from embedded_service.api.embedded import EmbeddedServer
from embedded_service.client import Client
from embedded_service.errors import UnknownJob
from tests.api.conftest import TEST_COMMANDS, Running


@pytest.fixture
def running(tmp_path):  # type: ignore[no-untyped-def]
    def setup(svc):  # type: ignore[no-untyped-def]
        @svc.task("add")
        def add(a: int, b: int) -> int:
            return a + b

    server = EmbeddedServer(
        f"sqlite:///{tmp_path / 'jobs.db'}",
        probes=False,
        write_local=False,
        grace_s=0.5,
        setup=setup,
        log_dir=tmp_path / "logs",
        commands=TEST_COMMANDS,
    )
    server.start()
    try:
        yield Running(server)
    finally:
        server.stop()


def _finished(c: Client, job_id: str, timeout: float = 15):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (job := c.job(job_id)).state.value in ("queued", "running"):
        assert time.monotonic() < deadline, f"job {job_id} still {job.state}"
        time.sleep(0.05)
    return job


def test_submit_task_and_command_then_read_them_back(running: Running) -> None:
    with Client(running.url, running.tokens["client"]) as c:
        task = c.submit_task("add", args=[2, 3])
        assert task.owner == "client" and task.kind.value == "task"
        assert _finished(c, task.id).result == 5
        command = c.submit_command([sys.executable, "-c", "print('line one'); print('line two')"], env={"X": "1"})
        done = _finished(c, command.id)
        assert (done.state.value, done.exit_code) == ("succeeded", 0)
        assert c.job_log(command.id, tail=1) == "line two\n"
        assert c.job_log(command.id) == "line one\nline two\n"
        assert {j.id for j in c.jobs().jobs} == {task.id, command.id}
        assert [j.id for j in c.jobs(state="succeeded", limit=1).jobs] == [command.id]


def test_follow_streams_lines_as_they_are_written(running: Running) -> None:
    script = "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.4)\n"
    with Client(running.url, running.tokens["client"]) as c:
        job = c.submit_command([sys.executable, "-c", script])
        seen: list[tuple[float, str]] = []
        started = time.monotonic()
        for line in c.follow_log(job.id, tail=10):
            seen.append((time.monotonic() - started, line))
        assert [line for _, line in seen] == ["tick 0", "tick 1", "tick 2"]
        assert seen[-1][0] - seen[0][0] > 0.5  # delivered while running, not all at the end
        assert c.job(job.id).state.value == "succeeded"


def test_clients_see_and_cancel_only_their_own_jobs(running: Running) -> None:
    with (
        Client(running.url, running.tokens["client"]) as mine,
        Client(running.url, running.tokens["client2"]) as theirs,
        Client(running.url, running.tokens["operator"]) as op,
    ):
        job = mine.submit_command([sys.executable, "-c", "import time; time.sleep(30)"])
        assert theirs.jobs().jobs == []
        with pytest.raises(UnknownJob):
            theirs.job(job.id)
        with pytest.raises(UnknownJob):
            theirs.cancel_job(job.id)
        assert [j.id for j in op.jobs(owner="client").jobs] == [job.id]
        cancelled = op.cancel_job(job.id)
        assert cancelled.state.value == "cancelled"
        entry = op.audit()[0]
        assert (entry.action, entry.actor, entry.target, entry.after) == ("job.cancel", "operator", job.id, "cancelled")


def test_bad_job_input_is_422_and_unknown_task_404(running: Running) -> None:
    with running.http("client") as http:
        assert http.post("/v1/jobs", json={"argv": []}).status_code == 422
        assert http.post("/v1/jobs", json={"argv": ["x"], "shell": True}).status_code == 422
        unknown = http.post("/v1/jobs", json={"task": "nope"})
        assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_task"
    with running.http("viewer") as viewer:
        assert viewer.post("/v1/jobs", json={"argv": ["true"]}).status_code == 403
