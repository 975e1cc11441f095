"""The dashboard's Connection against real servers over loopback: data signals, actions, loss and return."""

from __future__ import annotations

import asyncio
import socket
import sys

from desktop_harness import QtLoop, start_server

from desktop.connection import Connection, ConnectionSpec, LinkState, backoff_delays
from embedded_service.api.auth import create_token
from embedded_service.jobs import JobSettings
from embedded_service.model import CommandSubmit, Role


def connect(url: str, token: str | None, **kwargs) -> Connection:  # type: ignore[no-untyped-def]
    conn = Connection(ConnectionSpec(name="test", url=url), token, delays=lambda attempt: 0.2, **kwargs)
    conn.start()
    return conn


def test_live_connection_delivers_snapshots_history_jobs_and_audit(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    got: dict[str, list] = {"snap": [], "history": [], "jobs": [], "audit": []}
    conn = Connection(ConnectionSpec(name="local", url=server.url), server.token, delays=lambda a: 0.2)
    conn.snapshot_received.connect(got["snap"].append)
    conn.history_received.connect(got["history"].append)
    conn.jobs_received.connect(got["jobs"].extend)
    conn.audit_received.connect(got["audit"].extend)
    conn.start()
    qloop.until(lambda: conn.state is LinkState.live and got["snap"], what="first snapshot")
    assert got["history"], "history is backfilled before the stream"
    assert [q.config.name for q in got["snap"][-1].queues] == ["default"]
    assert conn.stale is False

    conn.set_limit("default", 4)
    qloop.until(lambda: got["snap"][-1].queues[0].config.limit == 4, what="the new limit in a snapshot")
    qloop.until(lambda: any(e.action.startswith("queue.") or "limit" in e.action for e in got["audit"]), what="audit event")

    conn.submit_command(CommandSubmit(argv=["true"], queue="default"))
    qloop.until(lambda: any(j.state == "succeeded" for j in got["jobs"]), what="job events up to success")
    qloop.run(conn.close())
    assert conn.state is LinkState.closed


def test_failed_action_says_why(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    failures: list[tuple[str, str]] = []
    conn = connect(server.url, server.token)
    conn.action_failed.connect(lambda what, why: failures.append((what, why)))
    qloop.until(lambda: conn.state is LinkState.live, what="live")
    conn.pause("no-such-queue")
    qloop.until(lambda: failures, what="a failure report")
    assert failures[0][0] == "pause no-such-queue"
    assert "no-such-queue" in failures[0][1]
    qloop.run(conn.close())


def test_viewer_token_cannot_act_and_is_told_so(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    viewer = server.call(create_token(server.service.store, "watcher", Role.viewer))
    failures: list[str] = []
    conn = connect(server.url, viewer)
    conn.action_failed.connect(lambda what, why: failures.append(why))
    qloop.until(lambda: conn.state is LinkState.live, what="live with a viewer token")
    conn.set_limit("default", 9)
    qloop.until(lambda: failures, what="a refusal")
    assert "not allowed" in failures[0]
    assert server.service.queue_config("default").limit != 9
    qloop.run(conn.close())


def test_unknown_token_stops_retrying_and_says_unauthorized(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    conn = connect(server.url, "not-a-token")
    qloop.until(lambda: conn.state is LinkState.unauthorized, what="unauthorized")
    assert "refused the token" in conn.detail
    assert conn.stale is True
    qloop.run(conn.close())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_goes_away_and_comes_back(qloop: QtLoop, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = f"sqlite:///{tmp_path / 'slots.db'}"
    port = free_port()
    first = start_server(store, port=port, auth=False)
    states: list[str] = []
    stale: list[bool] = []
    conn = connect(first.url, None)
    conn.state_changed.connect(lambda state, detail: states.append(state))
    conn.stale_changed.connect(stale.append)
    qloop.until(lambda: conn.state is LinkState.live, what="live")
    first.call(first.service.set_limit("default", 3))
    qloop.until(lambda: conn.last_snapshot and conn.last_snapshot.queues[0].config.limit == 3, what="limit 3 seen")

    first.stop()
    qloop.until(lambda: conn.state is LinkState.reconnecting, what="the loss noticed")
    qloop.until(lambda: conn.stale, what="figures marked stale")
    assert "retrying" in conn.detail

    second = start_server(store, port=port, auth=False)
    try:
        qloop.until(lambda: conn.state is LinkState.live and not conn.stale, timeout=20, what="reconnected")
        assert conn.last_snapshot is not None and conn.last_snapshot.queues[0].config.limit == 3
        assert states.count("live") >= 1 and "reconnecting" in states
        assert stale[-1] is False
    finally:
        qloop.run(conn.close())
        second.stop()


def test_backoff_doubles_to_a_cap_with_jitter() -> None:
    delay = backoff_delays(first_s=1, max_s=8)
    for attempt, base in [(0, 1), (1, 2), (2, 4), (3, 8), (10, 8)]:
        assert 0.8 * base <= delay(attempt) <= 1.2 * base


def test_a_server_answering_nonsense_is_reported_and_retried(qloop: QtLoop) -> None:
    import http.server
    import threading

    hits: list[str] = []

    class Nonsense(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"this is not json")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Nonsense)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        conn = connect(f"http://127.0.0.1:{httpd.server_address[1]}", None)
        qloop.until(
            lambda: "did not answer as SlotDeck does" in conn.detail and len(hits) >= 2, what="a report and a retry"
        )
        assert conn.state is LinkState.reconnecting and conn.stale
        qloop.run(conn.close())
    finally:
        httpd.shutdown()


def test_a_job_that_changes_during_the_backfill_still_ends_in_its_latest_state(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    from embedded_service.client import AsyncClient

    class SlowAudit(AsyncClient):
        """Reads the audit log only after a job ran start to finish: after the job backfill, before the stream."""

        async def audit(self, limit: int = 100, before_id: int | None = None):  # type: ignore[no-untyped-def]
            job = await self.submit_command(["true"])
            while (await self.job(job.id)).state != "succeeded":
                await asyncio.sleep(0.02)
            return await super().audit(limit, before_id)

    jobs: dict[str, str] = {}
    conn = Connection(
        ConnectionSpec(name="t", url=server.url), server.token, delays=lambda a: 0.2,
        client_factory=lambda spec, token: SlowAudit(spec.url, token),
    )  # fmt: skip
    conn.jobs_received.connect(lambda batch: jobs.update({j.id: j.state.value for j in batch}))
    conn.start()
    qloop.until(lambda: conn.state is LinkState.live, what="live")
    qloop.until(lambda: list(jobs.values()) == ["succeeded"], what="the job's latest state")
    qloop.run(conn.close())


def test_a_log_page_then_its_new_lines_reach_the_view_in_a_few_batches_in_order(qloop: QtLoop, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pages: list[tuple[object, bool]] = []
    batches: list[list[str]] = []
    conn = connect(server.url, server.token)
    conn.log_page.connect(lambda job_id, page, latest: pages.append((page, latest)))
    conn.log_lines.connect(lambda job_id, lines: batches.append(lines))
    qloop.until(lambda: conn.state is LinkState.live, what="live")
    go = tmp_path / "go"
    script = (
        f"import os, time\nprint('start', flush=True)\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
        "for i in range(1200): print('line', i)\nprint('done', flush=True)\ntime.sleep(600)"
    )
    job = server.call(server.service.submit_command([sys.executable, "-c", script]))
    qloop.until(lambda: "start" in server.call(server.service.job_log(job.id)), what="the job's first line")
    conn.follow_log(job.id)
    qloop.until(lambda: pages, what="the log's last page")
    page, latest = pages[0]
    assert latest and [(p.attempt, p.text) for p in page.parts] == [(1, "start\n")]  # type: ignore[attr-defined]
    go.touch()
    qloop.until(lambda: batches and batches[-1][-1] == "done", what="what follows the page, to its last line")
    lines = [line for batch in batches for line in batch]
    assert lines == [f"line {i}" for i in range(1200)] + ["done"]  # from the page's end: nothing twice, in order
    assert len(batches) <= 5, f"{len(batches)} signals for 1,201 lines"
    conn.follow_log("")
    server.call(server.service.cancel_job(job.id))
    qloop.run(conn.close())


def test_jobs_pruned_by_retention_are_announced(qloop: QtLoop) -> None:
    server = start_server(jobs=JobSettings(poll_s=0.05, keep_finished=1, keep_finished_s=None, prune_every_s=0.1))
    try:
        pruned: list[str] = []
        conn = connect(server.url, server.token)
        conn.jobs_pruned.connect(pruned.extend)
        qloop.until(lambda: conn.state is LinkState.live, what="live")
        jobs = [server.call(server.service.submit_command(["true"])) for _ in range(3)]
        qloop.until(lambda: len(pruned) >= 2, what="two of three finished jobs pruned (one is kept)")
        assert set(pruned) < {job.id for job in jobs}
        qloop.run(conn.close())
    finally:
        server.stop()


def test_a_server_out_of_focus_is_asked_for_one_snapshot_a_second(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    """Ten servers at 10 Hz are 100 snapshots a second to decode: out of focus, the stream asks for one a second
    (the server skips the rest), and back in focus it is reopened at the server's full rate, resuming its events."""
    import time

    from embedded_service.client import AsyncClient

    opened: list[float | None] = []
    arrivals: list[tuple[int, float]] = []  # (stream number, monotonic time) of each snapshot on the wire

    class Watched(AsyncClient):
        async def events(self, last_event_id=None, types=None, snapshot_interval_s=None):  # type: ignore[no-untyped-def]
            opened.append(snapshot_interval_s)
            number = len(opened)
            async for event in super().events(last_event_id, types, snapshot_interval_s):
                if event.type == "snapshot":
                    arrivals.append((number, time.monotonic()))
                yield event

    conn = Connection(
        ConnectionSpec(name="t", url=server.url), server.token, delays=lambda a: 0.2,
        client_factory=lambda spec, token: Watched(spec.url, token),
    )  # fmt: skip
    conn.background = True
    conn.start()
    qloop.until(lambda: sum(n == 1 for n, _ in arrivals) >= 3, what="three snapshots out of focus")
    first = [t for n, t in arrivals if n == 1]
    assert opened == [1.0]
    assert first[2] - first[0] >= 1.5, f"3 snapshots of a 20 Hz server in {first[2] - first[0]:.2f} s"

    conn.background = False
    qloop.until(lambda: sum(n == 2 for n, _ in arrivals) >= 10, what="the full rate back in focus")
    assert opened == [1.0, None]
    limit_seen = qloop.run(_limit_after_change(conn, server))
    assert limit_seen == 5 and opened == [1.0, None], "one stream, events still followed"
    qloop.run(conn.close())


async def _limit_after_change(conn: Connection, server) -> int:  # type: ignore[no-untyped-def]
    await asyncio.to_thread(server.call, server.service.set_limit("default", 5))
    while conn.last_snapshot is None or conn.last_snapshot.queues[0].config.limit != 5:
        await asyncio.sleep(0.02)
    return conn.last_snapshot.queues[0].config.limit
