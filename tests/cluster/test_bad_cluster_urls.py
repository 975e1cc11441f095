"""Bad redis-mode store URLs of every shape: `serve --store`, `SLOTDECK_STORE` and `token ... --store` answer one
line (exit 2 for a URL that cannot be right, 8 for one the Redis refuses), never a traceback or the password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redisproc import PrivateRedis

SECRET = "s3cretPW"


def run(args: list[str], home: Path, store_env: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTDECK_", "MAX_CONCURRENT"))}
    env["SLOTDECK_HOME"] = str(home)
    if store_env is not None:
        env["SLOTDECK_STORE"] = store_env
    return subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize(
    ("shape", "code", "reason"),
    [
        ("redis://:{pw}@127.0.0.1:{port}/0?namespace=x&foo=bar", 2, "foo"),
        ("redis://:{pw}@127.0.0.1:{port}/0?namespace=x&socket_timeout=abc", 2, "socket_timeout"),
        ("redis://:{pw}@127.0.0.1:{port}/abc?namespace=x", 2, "must be a number"),
        ("redis://:{pw}@127.0.0.1:{port}/-1?namespace=x", 2, "must be a number"),
        ("redis://127.0.0.1:{port}/99999?namespace=x", 8, "DB index is out of range"),
        ("redis+sentinel://:{pw}@127.0.0.1:{port}/mymaster/0?namespace=x", 8, "SENTINEL"),  # a Redis, not a Sentinel
        ("redis://:{pw}@127.0.0.1:1/0?namespace=x", 8, "redis unreachable"),
    ],
)
def test_a_bad_cluster_url_is_one_line_without_its_password(
    redis_server: PrivateRedis, tmp_path: Path, shape: str, code: int, reason: str
) -> None:
    url = shape.format(pw=SECRET, port=redis_server.port)
    for args, store_env in (
        (["serve", "--no-probes", "--port", "1", "--store", url], None),
        (["serve", "--no-probes", "--port", "1"], url),
        (["token", "list", "--store", url], None),
    ):
        done = run(args, tmp_path / "home", store_env)
        said = done.stdout + done.stderr
        assert done.returncode == code, (args, said)
        assert "Traceback" not in said and SECRET not in said, said
        assert len(done.stderr.strip().splitlines()) == 1 and reason in done.stderr, done.stderr
