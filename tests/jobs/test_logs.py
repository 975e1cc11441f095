"""The capped log: bounded on disk, and its tail whole lines in order even across a rotation."""

from __future__ import annotations

import random
from pathlib import Path

from embedded_service.jobs.logs import CappedLog, read_tail, remove_log


def test_tail_across_rotations_with_lines_cut_between_chunks(tmp_path: Path) -> None:
    rng = random.Random(7)
    for trial in range(50):
        path = tmp_path / f"{trial}.log"
        log = CappedLog(path, 4096)
        stream = b"".join(f"line {i}\n".encode() for i in range(3000))
        at = 0
        while at < len(stream):  # chunks cut anywhere, as pipe reads are
            step = rng.choice([3, 17, 400, 2500])
            log.write(stream[at : at + step])
            at += step
        log.close()
        assert path.stat().st_size <= 4096 and path.with_name(path.name + ".1").stat().st_size <= 4096
        tail = read_tail(path, 300).splitlines()
        assert len(tail) == 300 and tail[-1] == "line 2999"
        numbers = [int(line.split()[1]) for line in tail]
        assert numbers == sorted(numbers)


def test_an_oversized_chunk_keeps_its_end_from_a_line_start(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    log = CappedLog(path, 1024)
    log.write(b"before\npartial")
    log.write(b"".join(f"row {i}\n".encode() for i in range(1000)))
    log.close()
    assert path.stat().st_size <= 1024
    assert path.read_bytes().startswith(b"row ")
    assert read_tail(path, 1) == "row 999\n"
    assert path.with_name("big.log.1").read_bytes() == b"before\npartial\n"


def test_short_logs_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    log = CappedLog(path, 1024)
    log.write(b"one\ntwo\nthree")
    log.close()
    assert read_tail(path, 2) == "two\nthree"
    assert read_tail(path, 50) == "one\ntwo\nthree"
    assert read_tail(tmp_path / "missing.log", 5) == ""
    remove_log(path)
    assert not path.exists()
