"""`slotdeck cancel JOB --wait SECONDS` (and any command's `--timeout SECONDS`) refuses a negative, zero or
non-finite number as a usage error (exit 2) before it sends anything (attack on issue 11: `--wait -5` cancelled the job
and said "still cancelling after -5s", `--wait nan` "after nans"; `--timeout nan` ended in a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.api.conftest import Running


@pytest.mark.parametrize("option", ["--wait", "--timeout"])
@pytest.mark.parametrize("seconds", ["-5", "0", "nan", "inf", "soon"])
def test_cancel_wait_and_timeout_refuse_a_bad_number_of_seconds(running: Running, option: str, seconds: str) -> None:
    env = {**os.environ, "SLOTDECK_URL": running.url, "SLOTDECK_TOKEN": running.tokens["operator"]}
    done = subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", "cancel", "jNoSuchJob0001", option, seconds],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert option in done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--watch", "--count", "1", "--interval", "nan"],
        ["submit", "--queue", "default", "--max-runtime-s", "-1", "--", "true"],
        ["submit", "--queue", "default", "--max-runtime-s", "nan", "--", "true"],
    ],
)
def test_other_seconds_options_refuse_a_bad_number_without_a_traceback(running: Running, argv: list[str]) -> None:
    env = {**os.environ, "SLOTDECK_URL": running.url, "SLOTDECK_TOKEN": running.tokens["operator"]}
    done = subprocess.run(
        [sys.executable, "-m", "embedded_service.cli", *argv], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
