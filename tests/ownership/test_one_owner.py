"""One owner per store, with real processes: a second `serve` is refused, the dashboard's local service connects
to the owner instead of starting its own, eight processes open one new store at once, kill -9 frees the store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from embedded_service.errors import StoreLocked

from .serving import REPO, Serve, cli, home_env, jobs, pid_alive, wait_until


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_a_second_serve_on_one_home_is_refused_in_one_line_and_jobs_run_once(home: Path, tmp_path: Path) -> None:
    env = home_env(home)
    first = Serve(env).wait_serving()
    try:
        marks = tmp_path / "ran.txt"
        with first.http() as http:
            assert http.patch("/v1/queues/default", json={"limit": 1}).status_code == 200
            ids = []
            for n in range(6):
                script = f"import time; open({str(marks)!r}, 'a').write('{n}\\n'); time.sleep(0.3)"
                answer = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", script]})
                assert answer.status_code == 201, answer.text
                ids.append(answer.json()["id"])
        local_before = (home / "local.json").read_bytes()

        second = cli("serve", "--port", "0", "--no-probes", env=env)

        assert second.returncode == 7, second.stderr
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, second.stderr
        assert f"process {first.proc.pid}" in lines[0] and first.url in lines[0]
        assert "connect to it instead" in lines[0]
        assert (home / "local.json").read_bytes() == local_before  # the owner's token and URL untouched
        with first.http() as http:  # the local token still works: it was not replaced
            wait_until("every job to finish", lambda: all(j["state"] == "succeeded" for j in jobs(http)), 120)
            assert sorted(j["id"] for j in jobs(http)) == sorted(ids)
        assert sorted(marks.read_text().split()) == [str(n) for n in range(6)]  # each ran exactly once
        # read-only tools work beside the owner
        listed = cli("token", "list", "--json", env=env)
        assert listed.returncode == 0 and [t["name"] for t in json.loads(listed.stdout)] == ["local"]
        assert cli("status", env=env).returncode == 0
    finally:
        assert first.stop() == 0


def test_the_dashboards_local_service_connects_to_a_running_serve(home: Path, tmp_path: Path) -> None:
    env = home_env(home)
    owner = Serve(env).wait_serving()
    try:
        with owner.http() as http:
            job = http.post("/v1/jobs", json={"argv": ["sleep", "300"]}).json()
            running = wait_until(
                "the job's process to run",
                lambda: (j := http.get(f"/v1/jobs/{job['id']}").json())["state"] == "running" and j["pid"] and j,
            )
        local_before = (home / "local.json").read_bytes()
        # the dashboard's local service, as `slotdeck gui` starts it, in its own process
        probe = (
            "import asyncio, json\n"
            "from desktop.local import LocalService\n"
            "async def main():\n"
            "    local = LocalService(probes=False)\n"
            "    spec, token = await local.start()\n"
            "    print(json.dumps({'url': spec.url, 'token': token, 'local': spec.local, 'attached': local.attached}))\n"
            "    await local.stop()\n"
            "asyncio.run(main())\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe],
            env={**env, "QT_QPA_PLATFORM": "offscreen"},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        got = json.loads(result.stdout.strip().splitlines()[-1])
        assert got == {"url": owner.url, "token": owner.token, "local": False, "attached": owner.url}
        assert (home / "local.json").read_bytes() == local_before
        assert pid_alive(running["pid"])  # the owner's job was not taken for an orphan and killed
        with owner.http() as http:
            assert http.get(f"/v1/jobs/{job['id']}").json()["state"] == "running"
            assert http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    finally:
        owner.stop()


NEW_STORE_OPENER = """
import asyncio, json, os, sys, time
from embedded_service import SlotService
from embedded_service.errors import StoreLocked
from embedded_service.stores import SqliteStore
url, go, mode = sys.argv[1], sys.argv[2], sys.argv[3]
open(f"{go}.ready.{os.getpid()}", "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
async def main():
    if mode == "store":
        store = SqliteStore(url)
        await store.open()
        tokens = await store.list_tokens()
        await store.close()
        print(json.dumps({"opened": True, "tokens": len(tokens)}))
        return
    svc = SlotService(url)
    try:
        await svc.start()
    except StoreLocked as exc:
        print(json.dumps({"locked": True, "pid": exc.pid}))
        return
    print(json.dumps({"owner": os.getpid()}), flush=True)
    sys.stdin.readline()  # hold the store until told
    await svc.close()
asyncio.run(main())
"""


@pytest.mark.parametrize("mode", ["store", "service"])
def test_eight_processes_opening_one_new_store_at_once(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "new" / "fresh.db"
    go = tmp_path / "go"
    env = home_env(tmp_path / "home")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", NEW_STORE_OPENER, f"sqlite:///{db}", str(go), mode],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    try:
        wait_until("the openers to be ready", lambda: len(list(tmp_path.glob("go.ready.*"))) == 8, 120)
        go.touch()
        if mode == "store":
            results = []
            for proc in procs:
                out, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, err  # never "table queues already exists"
                results.append(json.loads(out))
            assert results == [{"opened": True, "tokens": 0}] * 8
            return
        lines = [proc.stdout.readline() for proc in procs]  # type: ignore[union-attr]
        results = [json.loads(line) for line in lines]
        owners = [r["owner"] for r in results if "owner" in r]
        assert len(owners) == 1, results
        refused = [r for r in results if r.get("locked")]
        assert len(refused) == 7
        assert {r["pid"] for r in refused} == {owners[0]}  # each refusal names the owner
        for proc in procs:
            if proc.poll() is None:
                proc.stdin.write("\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def stored_pid(db: Path, job_id: str) -> int | None:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        row = conn.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return json.loads(row[0])["pid"] if row else None


def test_kill_9_of_the_owner_frees_the_store_and_the_local_token_stays(home: Path) -> None:
    env = home_env(home)
    first = Serve(env).wait_serving()
    orphan_pid = None
    try:
        with first.http() as http:
            job = http.post("/v1/jobs", json={"argv": ["sleep", "300"], "max_attempts": 3}).json()
            orphan_pid = wait_until(
                "the job to run", lambda: (j := http.get(f"/v1/jobs/{job['id']}").json())["state"] == "running" and j["pid"]
            )
        wait_until("its pid to be stored", lambda: stored_pid(home / "slotdeck.db", job["id"]) == orphan_pid)
        token = first.token
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
    finally:
        first.kill()
    second = Serve(env).wait_serving()  # the kernel dropped the lock with the process: nothing stale is left
    try:
        assert second.token == token  # scripts that read local.json keep working across restarts
        with second.http() as http:
            assert http.get("/v1/snapshot").status_code == 200
            # orphan recovery ran in the new owner: the old process group is gone, the job runs again
            wait_until("the orphan to be stopped", lambda: not pid_alive(orphan_pid), 60)
            again = wait_until(
                "the job to run again",
                lambda: (
                    (j := http.get(f"/v1/jobs/{job['id']}").json())["state"] == "running" and j["pid"] != orphan_pid and j
                ),
            )
            assert again["attempts"] == 2
            http.post(f"/v1/jobs/{job['id']}/cancel")
    finally:
        assert second.stop() == 0
        if orphan_pid is not None and pid_alive(orphan_pid):
            os.kill(orphan_pid, signal.SIGKILL)


async def test_an_embedded_service_on_an_owned_store_raises_store_locked(home: Path) -> None:
    from embedded_service import SlotService

    env = home_env(home)
    owner = Serve(env).wait_serving()
    try:
        svc = SlotService(f"sqlite:///{home / 'slotdeck.db'}")
        with pytest.raises(StoreLocked) as raised:
            await svc.start()
        assert raised.value.pid == owner.proc.pid and raised.value.url == owner.url
        await asyncio.sleep(0)
        with owner.http() as http:
            assert http.get("/v1/snapshot").status_code == 200
    finally:
        owner.stop()


def test_serve_beside_the_dashboards_local_service_is_refused_naming_it(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embedded_service.api.embedded import EmbeddedServer

    monkeypatch.setenv("SLOTDECK_HOME", str(home))
    dashboard = EmbeddedServer(probes=False, grace_s=0.5).start()  # what `slotdeck gui` starts, in this process
    try:
        local_before = (home / "local.json").read_bytes()
        refused = cli("serve", "--port", "0", "--no-probes", env=home_env(home))
        assert refused.returncode == 7
        assert f"process {os.getpid()} serving {dashboard.url}" in refused.stderr
        assert (home / "local.json").read_bytes() == local_before
    finally:
        dashboard.stop()
    restarted = Serve(home_env(home)).wait_serving()  # once the dashboard is closed, serve owns the store
    try:
        assert restarted.token == json.loads(local_before)["token"]
    finally:
        assert restarted.stop() == 0
