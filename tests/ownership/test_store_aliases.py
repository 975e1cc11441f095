"""Files beside the store that someone else put there or took away: a second name for the database (a symlink) or a
removed lock file must not make a second owner, a killed owner's file must not refuse the next start, and a planted
symlink (or FIFO) in the store's directory must never be written through."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from .serving import Serve, cli, home_env, jobs, wait_until


def running_job(owner: Serve) -> dict[str, Any]:
    """A job of the owner's that runs until cancelled: what a second owner would stop as an orphan."""
    with owner.http() as http:
        job = http.post("/v1/jobs", json={"argv": ["sleep", "300"]}).json()
        wait_until("the job to run", lambda: http.get(f"/v1/jobs/{job['id']}").json()["state"] == "running")
    return job


def test_a_serve_on_a_symlink_to_an_owned_database_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    owner = Serve(home_env(home)).wait_serving()
    try:
        job = running_job(owner)
        alias = tmp_path / "alias.db"
        alias.symlink_to(home / "slotdeck.db")
        other_home = tmp_path / "other"

        second = cli("serve", "--port", "0", "--no-probes", "--store", f"sqlite:///{alias}", env=home_env(other_home))

        assert second.returncode == 7, second.stderr
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and f"process {owner.proc.pid}" in lines[0], second.stderr
        with owner.http() as http:  # the owner's token still works, its job was not stopped as an orphan
            assert [(j["id"], j["state"]) for j in jobs(http)] == [(job["id"], "running")]
            http.post(f"/v1/jobs/{job['id']}/cancel")
        # a token command on the alias goes to the owner (which wants a token), not into its store behind its back
        made = cli(
            "token", "create", "--role", "viewer", "--name", "v", "--store", f"sqlite:///{alias}", env=home_env(other_home)
        )
        assert made.returncode == 4, made.stderr
        with owner.http() as http:
            assert [t["name"] for t in http.get("/v1/tokens").json()] == ["local"]
    finally:
        assert owner.stop() == 0


def test_a_symlink_planted_as_the_spill_reserve_is_never_written_through(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("someone's data\n")
    victim.chmod(0o644)
    (home / "slotdeck.db-spill").symlink_to(victim)

    refused = cli("serve", "--port", "0", "--no-probes", env=home_env(home), timeout=20)

    assert victim.read_text() == "someone's data\n" and victim.stat().st_mode & 0o777 == 0o644
    assert refused.returncode == 8, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "slotdeck.db-spill" in lines[0] and "symbolic link" in lines[0], refused.stderr


def test_a_spill_reserve_holding_something_that_is_not_a_job_is_refused_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = Serve(home_env(home)).wait_serving()
    assert first.stop() == 0
    payload = json.dumps([{"id": 5}]).encode()
    with (home / "slotdeck.db-spill").open("r+b") as fh:
        fh.write(len(payload).to_bytes(8, "little") + payload)

    refused = cli("serve", "--port", "0", "--no-probes", env=home_env(home), timeout=20)

    assert refused.returncode == 8, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "slotdeck.db-spill" in lines[0], refused.stderr


def test_the_owner_file_is_never_written_through_a_planted_symlink(tmp_path: Path) -> None:
    import os

    from embedded_service.stores.ownership import StoreLock

    victim = tmp_path / "victim.txt"
    victim.write_text("someone's data\n")
    lock_path = tmp_path / "slotdeck.db.lock"
    (tmp_path / f".slotdeck.db.owner.json.{os.getpid()}.tmp").symlink_to(victim)  # the name the owner writes first

    lock = StoreLock(lock_path, str(tmp_path / "slotdeck.db")).take()
    try:
        assert victim.read_text() == "someone's data\n"
        assert json.loads((tmp_path / "slotdeck.db.owner.json").read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_a_symlink_planted_as_a_jobs_log_is_not_appended_to(tmp_path: Path) -> None:
    """Job ids within one server run are a counter after a random prefix, so the next job's log name is known;
    a symlink planted there (a store directory others may write to) must not get the job's output or a chmod."""
    home = tmp_path / "home"
    victim = tmp_path / "victim.txt"
    victim.write_text("someone's data\n")
    victim.chmod(0o644)
    server = Serve(home_env(home)).wait_serving()
    try:
        with server.http() as http:
            first = http.post("/v1/jobs", json={"argv": ["true"]}).json()
            wait_until("the first job", lambda: http.get(f"/v1/jobs/{first['id']}").json()["state"] == "succeeded")
            planted = f"{first['id'][:-1]}2"
            (home / "slotdeck.db-logs" / f"{planted}.log").symlink_to(victim)
            second = http.post("/v1/jobs", json={"argv": ["echo", "the job's output"]}).json()
            assert second["id"] == planted
            ended = wait_until(
                "the second job to end",
                lambda: (j := http.get(f"/v1/jobs/{planted}").json())["state"] not in ("queued", "running") and j,
            )
            assert ended["state"] == "failed", ended
        assert victim.read_text() == "someone's data\n" and victim.stat().st_mode & 0o777 == 0o644
    finally:
        assert server.stop() == 0


def test_a_serve_after_the_owners_lock_file_was_removed_is_still_refused(tmp_path: Path) -> None:
    """Removing "stale" lock files is a common clean-up; the owner keeps its lock on the removed file, so a second
    process would lock a new one: it must still see that the store has an owner."""
    home = tmp_path / "home"
    owner = Serve(home_env(home)).wait_serving()
    try:
        job = running_job(owner)
        (home / "slotdeck.db.lock").unlink()

        second = cli("serve", "--port", "0", "--no-probes", env=home_env(home), timeout=20)

        assert second.returncode == 7, second.stderr
        assert f"process {owner.proc.pid}" in second.stderr
        with owner.http() as http:
            assert http.get(f"/v1/jobs/{job['id']}").json()["state"] == "running"
            http.post(f"/v1/jobs/{job['id']}/cancel")
    finally:
        assert owner.stop() == 0
    again = Serve(home_env(home))
    try:
        again.wait_serving()  # once the owner has stopped, the store is free again
    finally:
        assert again.stop() == 0


def test_an_owner_file_left_by_a_killed_owner_naming_a_live_older_process_does_not_refuse_a_start(
    tmp_path: Path,
) -> None:
    """Containers sharing one volume: each one's main process is pid 1, so the pid a killed owner left in its owner
    file may name a live, older process elsewhere. The lock file it held is still there, unlocked: the store is free."""
    home = tmp_path / "home"
    first = Serve(home_env(home)).wait_serving()
    assert first.stop() == 0
    older = subprocess.Popen(["sleep", "60"])  # started before the owner file below was written
    try:
        time.sleep(0.05)
        owner_file = home / "slotdeck.db.owner.json"
        owner_file.write_text(json.dumps({"pid": older.pid, "url": "http://127.0.0.1:9", "since": time.time() + 2}))
        assert (home / "slotdeck.db.lock").exists()
        again = Serve(home_env(home))
        try:
            again.wait_serving()
        finally:
            assert again.stop() == 0
    finally:
        older.kill()
        older.wait()
