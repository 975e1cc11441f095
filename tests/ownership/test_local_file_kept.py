"""`local.json` names the first running service of a data directory: a second `serve` there on another store (a
memory store, say) does not send the CLI to itself or take the first one's token out of the file."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from .serving import Serve, cli, home_env, wait_until


def test_a_second_serve_on_another_store_leaves_the_owners_local_file_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = home_env(home)
    owner = Serve(env).wait_serving()
    try:
        local_before = (home / "local.json").read_bytes()
        other = Serve(env, "--store", "memory://")
        try:
            wait_until("the second server to serve", lambda: "serving http://" in other.output(), 60)
            assert (home / "local.json").read_bytes() == local_before
            assert "names another running service" in other.output()
            status = cli("queue", "list", "--json", env=env)  # the CLI still reaches the owner, with its token
            assert status.returncode == 0, status.stderr
        finally:
            assert other.stop() == 0
        assert (home / "local.json").read_bytes() == local_before  # its stop did not touch the file either
        with owner.http() as http:
            assert http.get("/v1/snapshot").status_code == 200
    finally:
        assert owner.stop() == 0


def test_a_restart_after_kill_9_takes_local_json_back_even_before_the_old_process_is_reaped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = home_env(home)
    first = Serve(env).wait_serving()
    os.kill(first.proc.pid, signal.SIGKILL)  # not waited for: it stays a zombie while the next one starts
    second = Serve(env)
    try:
        second.wait_serving()  # waits for local.json to name the second server
        assert "names another running service" not in second.output()
    finally:
        assert second.stop() == 0
        first.kill()
