"""The reserve file that keeps job states a full disk refused (stores.spill): what fits is kept whole, the rest is
handed back, and a reserve made again is empty."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embedded_service.model import Job, JobKind, JobState
from embedded_service.stores.spill import SpillFile


def job(n: int, result: str = "") -> Job:
    return Job(id=f"j{n}", kind=JobKind.task, queue="q", task="t", created_at=1.0, state=JobState.succeeded, result=result)


def test_what_fits_is_kept_and_comes_back_whole(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "db-spill", size=4096)
    assert spill.reserve() and (tmp_path / "db-spill").stat().st_size == 4096
    assert (tmp_path / "db-spill").stat().st_mode & 0o777 == 0o600
    assert spill.pending() == []
    jobs = [job(1), job(2, "x" * 1500), job(3, "y" * 3000)]
    kept = spill.write(jobs)
    assert [j.id for j in kept] == ["j1", "j2"]  # the third does not fit: handed back for the log
    assert spill.pending() == kept
    assert (tmp_path / "db-spill").stat().st_size == 4096  # never grows: only reserved space is used
    assert spill.reserve() and spill.pending() == []  # a new reserve (after they are stored) is empty


def test_without_a_reserve_nothing_is_kept(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "db-spill", size=4096)
    assert spill.pending() == []
    with pytest.raises(FileNotFoundError):  # the store logs it and keeps nothing
        spill.write([job(1)])
    assert not (tmp_path / "db-spill").exists()  # it never makes a file at close, when the disk may be full


@pytest.mark.timeout(20)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_place_of_the_reserve_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "db-spill")  # opening it for reading would wait for a writer that never comes
    spill = SpillFile(tmp_path / "db-spill", size=4096)
    with pytest.raises(OSError, match="not a regular file"):
        spill.pending()
    assert not spill.reserve()
