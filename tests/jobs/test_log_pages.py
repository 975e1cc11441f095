"""Job logs paged by log position, across a rotation, with attempt boundaries from the service's own index."""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import httpx

from embedded_service.api.embedded import EmbeddedServer
from embedded_service.jobs import JobSettings
from embedded_service.jobs.logs import CappedLog, index_path, read_index, read_page, remove_log


def _write(path: Path, attempt: int, lines: list[str], max_bytes: int = 1 << 20) -> None:
    log = CappedLog(path, max_bytes, attempt=attempt)
    for line in lines:
        log.write(line.encode() + b"\n")
    log.close()


def _text(path: Path, before: int | None, max_bytes: int) -> tuple[int, int, str]:
    page = read_page(path, before, max_bytes)
    return page.start, page.end, "".join(text for _, text in page.parts)


def test_pages_back_by_position_to_the_first_line_whole_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    _write(path, 1, [f"line {i:03d}" for i in range(200)])  # 9 bytes a line
    start, end, text = _text(path, None, 100)
    assert (start, end) == (1800 - 99, 1800) and text.startswith("line 189\n")  # the cut line is left out
    seen = text
    while start > 0:
        start, _, text = _text(path, start, 100)
        seen = text + seen
    assert seen == "".join(f"line {i:03d}\n" for i in range(200))
    assert read_page(path, 10**9, 100).end == 1800  # a position past the end is the end


def test_attempts_come_from_the_index_not_from_what_the_job_prints(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    _write(path, 1, ["first", '{"attempt": 7, "at": 0}'])
    _write(path, 2, ["second"])
    CappedLog(path, 1 << 20, attempt=3).close()  # began, wrote nothing yet
    page = read_page(path, None, 1 << 20)
    assert page.parts == ((1, 'first\n{"attempt": 7, "at": 0}\n'), (2, "second\n"), (3, ""))
    assert [n for n, _ in read_index(path).attempts] == [1, 2, 3]
    older = read_page(path, len(page.parts[0][1].encode()), 1 << 20)  # the page before attempt 2 does not mark it
    assert older.parts == ((1, 'first\n{"attempt": 7, "at": 0}\n'),)
    assert stat.S_IMODE(index_path(path).stat().st_mode) == 0o600
    remove_log(path)
    assert not index_path(path).exists()


def test_positions_stay_put_across_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    _write(path, 1, [f"row {i:04d}" for i in range(300)], max_bytes=1024)  # 9 bytes a line: rotates twice
    index = read_index(path)
    assert len(index.starts) == 3 and index.starts[-1] > 1024
    page = read_page(path, None, 1 << 20)
    assert page.first == index.starts[-2] and page.end == 2700  # what the first file held is gone
    text = "".join(t for _, t in page.parts)
    first_kept = page.first // 9
    assert text == "".join(f"row {i:04d}\n" for i in range(first_kept, 300))
    mid = read_page(path, page.end - 9 * 100, 90)  # ten lines ending 100 lines before the end, across the files
    assert "".join(t for _, t in mid.parts) == "".join(f"row {i:04d}\n" for i in range(190, 200))


def test_the_page_route_and_following_from_its_end(tmp_path: Path) -> None:
    settings = JobSettings(poll_s=0.05, retry_backoff_s=0.05, retry_backoff_max_s=0.05)
    server = EmbeddedServer("memory://", probes=False, write_local=False, grace_s=0.5, jobs=settings)
    with server, httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30) as http:
        script = "import os; print('run', os.environ['SLOTDECK_JOB_MARK'].split('.')[1]); raise SystemExit(1)"
        job = http.post("/v1/jobs", json={"argv": [sys.executable, "-c", script], "max_attempts": 2}).json()
        deadline = time.monotonic() + 30
        while http.get(f"/v1/jobs/{job['id']}").json()["state"] != "failed":
            assert time.monotonic() < deadline, "the job did not fail twice"
            time.sleep(0.05)
        page = http.get(f"/v1/jobs/{job['id']}/log/page").json()
        assert page["parts"] == [{"attempt": 1, "text": "run 1\n"}, {"attempt": 2, "text": "run 2\n"}]
        assert (page["start"], page["end"], page["first"]) == (0, 12, 0)
        followed = http.get(f"/v1/jobs/{job['id']}/log", params={"follow": "true", "after": 6}).text
        assert followed == "run 2\n"
        for bad in ({"max_bytes": 0}, {"max_bytes": 2 * 1024 * 1024}, {"before": -1}):
            assert http.get(f"/v1/jobs/{job['id']}/log/page", params=bad).status_code == 422, bad
        assert http.get("/v1/jobs/nope/log/page").status_code == 404
