"""A client cannot climb out of an allow-list's globs with `..` or a symlink (real server, real processes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from embedded_service.api.commands import load_allowlist
from tests.api.conftest import Running
from tests.api.test_commands_and_limits import _finished, _server


def test_allow_list_globs_cannot_be_climbed_out_of(tmp_path: Path) -> None:
    public, work, evil = tmp_path / "public", tmp_path / "work", tmp_path / "evil"
    for folder in (public, work / "mine", evil):
        folder.mkdir(parents=True)
    (public / "a.txt").write_text("public\n")
    (tmp_path / "secret.txt").write_text("the admin token\n")
    (work / "mine" / "tool.py").write_text("print('good')\n")
    (evil / "tool.py").write_text("print('evil')\n")
    (work / "link").symlink_to(evil)
    allow = tmp_path / "allow.toml"
    allow.write_text(
        f"""
[[allow]]
pattern = ["cat", {json.dumps(str(public) + "/*")}]

[[allow]]
prefix = [{json.dumps(sys.executable)}, "tool.py"]
cwd = [{json.dumps(str(work) + "/*")}]
"""
    )
    server = _server(tmp_path, load_allowlist(allow)).start()
    try:
        with Running(server).http("client") as client:
            read = client.post("/v1/jobs", json={"argv": ["cat", str(public / "a.txt")]})
            assert read.status_code == 201 and _finished(client, read.json()["id"])["state"] == "succeeded"
            assert client.get(f"/v1/jobs/{read.json()['id']}/log").text == "public\n"
            run = client.post("/v1/jobs", json={"argv": [sys.executable, "tool.py"], "cwd": str(work / "mine")})
            assert run.status_code == 201 and _finished(client, run.json()["id"])["state"] == "succeeded"
            assert client.get(f"/v1/jobs/{run.json()['id']}/log").text == "good\n"

            climbed = client.post("/v1/jobs", json={"argv": ["cat", f"{public}/../secret.txt"]})
            assert climbed.status_code == 403, climbed.text
            for cwd in (f"{work}/../evil", f"{work}/mine/../../evil", str(work / "link")):
                escaped = client.post("/v1/jobs", json={"argv": [sys.executable, "tool.py"], "cwd": cwd})
                assert escaped.status_code == 403, (cwd, escaped.text)
            assert len(client.get("/v1/jobs").json()["jobs"]) == 2, "nothing refused was stored"
    finally:
        server.stop()
