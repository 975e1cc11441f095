"""Store faults with a real server on a real small volume: a full disk gives 503s that name the cause, health says
the store fails, a change that could not be stored is not applied, a job's outcome waits until it can be stored;
start-up on a read-only or corrupt store says so in one line."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .serving import Serve, cli, home_env, wait_until


@contextlib.contextmanager
def small_volume(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of `size` at `where` (needs root and mount rights; the test is skipped, saying why, without them)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(volume: Path) -> Path:
    """Write a file until the volume has no byte left."""
    filler = volume / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as fh:
        while True:
            fh.write(b"\0")
    return filler


def test_a_full_disk_gives_503_names_the_cause_applies_nothing_and_keeps_the_outcome(tmp_path: Path) -> None:
    with small_volume(tmp_path / "vol") as volume:
        env = home_env(volume / "home")
        go = tmp_path / "go"  # outside the volume
        server = Serve(env).wait_serving()
        try:
            with server.http() as http:
                script = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)\nprint('done')\n"
                job = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", script]}).json()
                wait_until("the job to run", lambda: http.get(f"/v1/jobs/{job['id']}").json()["state"] == "running")
                audit_before = http.get("/v1/audit").json()
                filler = fill(volume)

                refused = http.post("/v1/jobs", json={"argv": ["true"]})
                assert refused.status_code == 503, refused.text
                assert refused.headers["content-type"] == "application/problem+json"
                assert "disk full" in refused.json()["detail"] and refused.json()["code"] == "store_failing"
                assert "Retry-After" in refused.headers
                health = http.get("/v1/health").json()
                assert (health["status"], health["store_ok"], health["store_fault"]) == ("store_failing", False, "disk full")

                changed = http.patch("/v1/queues/default", json={"limit": 4})
                assert changed.status_code == 503 and "disk full" in changed.json()["detail"]
                assert http.get("/v1/queues/default").json()["config"]["limit"] == 1  # not applied
                created = http.put("/v1/queues/extra", json={"limit": 2})
                assert created.status_code == 503 and "extra" not in [q["name"] for q in http.get("/v1/queues").json()]
                metrics = http.get("/metrics").text
                assert "slotdeck_store_ok 0.0" in metrics and 'slotdeck_store_errors_total{cause="disk full"}' in metrics
                assert http.get("/v1/audit").json() == audit_before  # nor audited

                go.touch()  # the job ends while its outcome cannot be stored
                wait_until(
                    "the job's outcome to be shown", lambda: http.get(f"/v1/jobs/{job['id']}").json()["state"] == "succeeded"
                )
                errors = health["store_errors"]
                wait_until("the store to be retried", lambda: http.get("/v1/health").json()["store_errors"] > errors + 2)

                filler.unlink()  # space again: the outcome is stored, health recovers
                wait_until("the store to recover", lambda: http.get("/v1/health").json()["store_ok"], 60)
                assert http.post("/v1/jobs", json={"argv": ["true"]}).status_code == 201
            assert server.stop() == 0
        finally:
            go.touch()  # never leave the job's process waiting, whatever failed
            server.kill()
        log = server.output()
        errors_logged = [line for line in log.splitlines() if " ERROR " in line]
        assert len(errors_logged) == 1 and "disk full" in errors_logged[0], log  # once for the cause, then counted
        assert "Traceback" not in log, log

        again = Serve(env).wait_serving()  # the outcome was really stored, not only shown
        try:
            with again.http() as http:
                stored = http.get(f"/v1/jobs/{job['id']}").json()
                assert (stored["state"], stored["attempts"]) == ("succeeded", 1)
        finally:
            assert again.stop() == 0


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_start_up_on_a_corrupt_store_says_so_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "slotdeck.db").write_bytes(b"this is not a SQLite database, it is a text file\n" * 100)
    started = cli("serve", "--port", "0", "--no-probes", env=home_env(home))
    assert started.returncode == 8
    assert "corrupt" in _one_line(started)


def test_start_up_on_a_read_only_store_says_so_in_one_line(tmp_path: Path) -> None:
    with small_volume(tmp_path / "vol") as volume:
        env = home_env(volume / "home")
        first = Serve(env).wait_serving()
        assert first.stop() == 0
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(volume)], capture_output=True, text=True)
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount the tmpfs read-only: {remounted.stderr.strip()}")
        started = cli("serve", "--port", "0", "--no-probes", env=env)
        assert started.returncode == 8
        assert "read-only" in _one_line(started)
        for action in (["list"], ["create", "--role", "viewer", "--name", "v"]):  # the token tools say so too
            tokens = cli("token", *action, env=env)
            assert tokens.returncode == 8 and "read-only" in _one_line(tokens)


def test_token_commands_on_a_data_directory_that_cannot_be_made_say_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("in the way\n")
    env = home_env(tmp_path / "a-file" / "home")
    for action in (["list"], ["create", "--role", "viewer", "--name", "v"], ["delete", "v"]):
        tokens = cli("token", *action, env=env)
        assert tokens.returncode == 8
        assert "cannot use the data directory" in _one_line(tokens)


def test_an_acquire_refused_for_a_full_disk_holds_no_slot(tmp_path: Path) -> None:
    """503 to the client means it holds nothing: the grant that could not be stored is given back at once,
    not left counting against the limit until its TTL while nobody knows of it."""
    with small_volume(tmp_path / "vol") as volume:
        server = Serve(home_env(volume / "home")).wait_serving()
        try:
            with server.http() as http:
                assert http.put("/v1/queues/q", json={"limit": 2}).status_code in (200, 201)
                filler = fill(volume)
                for i in range(2):
                    refused = http.post("/v1/queues/q/leases", json={"owner": f"h{i}", "ttl_s": 600, "wait_s": 0})
                    assert refused.status_code == 503 and "disk full" in refused.json()["detail"], refused.text
                queue = http.get("/v1/queues/q").json()
                assert queue["in_use"] == 0, queue  # nobody was told they hold a slot
                filler.unlink()
                wait_until("the store to recover", lambda: http.get("/v1/health").json()["store_ok"], 60)
                got = http.post("/v1/queues/q/leases", json={"owner": "after", "ttl_s": 60, "wait_s": 0})
                assert got.status_code == 201, got.text  # the full limit is there again, not after 600 s
                assert http.delete(f"/v1/leases/{got.json()['lease']['id']}").status_code == 204
            assert server.stop() == 0
        finally:
            server.kill()


def test_a_queued_job_the_full_disk_cannot_start_is_not_granted_over_and_over(tmp_path: Path) -> None:
    """A queued job whose start cannot be stored is given back; it is not offered again (a fence used, granted and
    released counted, nothing run) until the store takes a write; with space again it runs, once."""
    with small_volume(tmp_path / "vol") as volume:
        go, runs = tmp_path / "go", tmp_path / "runs"  # outside the volume
        server = Serve(home_env(volume / "home")).wait_serving()
        try:
            with server.http() as http:
                hold = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
                first = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", hold]}).json()
                wait_until("the first job to run", lambda: http.get(f"/v1/jobs/{first['id']}").json()["state"] == "running")
                count = f"open({str(runs)!r}, 'a').write('ran\\n')\n"
                second = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", count]}).json()  # queued (limit 1)
                filler = fill(volume)
                go.touch()  # the first ends: its slot frees while nothing can be stored

                def granted() -> int:
                    return int(http.get("/v1/queues/default").json()["totals"]["granted"])

                wait_until("the first job's slot to be free", lambda: http.get("/v1/queues/default").json()["in_use"] == 0)
                time.sleep(1.0)  # the feeder's next poll tries the second job (and is refused) at most once
                settled = granted()
                time.sleep(4.0)  # old code: granted and released again at every poll (1 s)
                assert granted() == settled, "a job that cannot start was granted again and again"
                assert http.get(f"/v1/jobs/{second['id']}").json()["state"] == "queued"
                assert not runs.exists()

                filler.unlink()
                wait_until(
                    "the second job to succeed",
                    lambda: http.get(f"/v1/jobs/{second['id']}").json()["state"] == "succeeded",
                    60,
                )
                assert runs.read_text() == "ran\n"
            assert server.stop() == 0
        finally:
            go.touch()
            server.kill()


def test_compat_health_reports_a_failing_store(tmp_path: Path) -> None:
    """`GET /health` (the load balancer's probe) says the store fails, with /v1/health's cause, and recovers."""
    with small_volume(tmp_path / "vol") as volume:
        server = Serve(home_env(volume / "home")).wait_serving()
        try:
            with server.http() as http:
                assert http.get("/health").json()["status"] == "healthy"
                filler = fill(volume)
                assert http.post("/v1/jobs", json={"argv": ["true"]}).status_code == 503
                fault = http.get("/v1/health").json()["store_fault"]
                assert fault == "disk full"
                compat = http.get("/health").json()
                assert (compat["status"], compat["store_fault"]) == ("store_failing", fault), compat
                assert compat["max_concurrent"] == 1  # the legacy fields are still there
                filler.unlink()
                wait_until("the store to recover", lambda: http.get("/v1/health").json()["store_ok"], 60)
                compat = http.get("/health").json()
                assert compat["status"] == "healthy" and "store_fault" not in compat, compat
            assert server.stop() == 0
        finally:
            server.kill()


def test_an_outcome_refused_by_a_full_disk_survives_sigterm(tmp_path: Path) -> None:
    """A job succeeds while the disk is full, the service is stopped before space returns: the outcome is kept in
    the space reserved at start and stored at the next start; the job does not run again."""
    with small_volume(tmp_path / "vol") as volume:
        env = home_env(volume / "home")
        go, runs = tmp_path / "go", tmp_path / "runs"  # outside the volume
        server = Serve(env).wait_serving()
        try:
            assert (volume / "home" / "slotdeck.db-spill").stat().st_mode & 0o777 == 0o600
            with server.http() as http:
                script = (
                    "import os, time\n"
                    f"open({str(runs)!r}, 'a').write('ran\\n')\n"
                    f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
                )
                job = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", script]}).json()
                wait_until("the job to run", lambda: http.get(f"/v1/jobs/{job['id']}").json()["state"] == "running")
                filler = fill(volume)
                go.touch()

                def shown() -> bool:
                    return http.get(f"/v1/jobs/{job['id']}").json()["state"] == "succeeded"

                wait_until("the outcome to be shown", shown)
                assert not http.get("/v1/health").json()["store_ok"]  # it really could not be stored
            assert server.stop() == 0
        finally:
            go.touch()
            server.kill()
        assert "kept in its reserve" in server.output(), server.output()
        assert not list((volume / "home").glob(".local.json.*")), "a half-written local.json was left behind"
        refused = cli("serve", "--port", "0", "--no-probes", env=env)  # still full: it refuses, it does not re-run
        assert refused.returncode == 8 and "disk full" in _one_line(refused), refused.stderr
        filler.unlink()

        again = Serve(env).wait_serving()
        try:
            with again.http() as http:
                stored = http.get(f"/v1/jobs/{job['id']}").json()
                assert (stored["state"], stored["attempts"], stored["exit_code"]) == ("succeeded", 1, 0), stored
        finally:
            assert again.stop() == 0
        assert runs.read_text() == "ran\n"  # it never ran a second time
        assert "Traceback" not in again.output(), again.output()
