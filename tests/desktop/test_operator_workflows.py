"""Issue 15's operator workflows with real widgets, and against a real server over loopback where the
server takes part: role-aware actions, refused tokens, queue create/edit/delete, retry, bulk cancel, the
log viewer's paging, the submit dialog's shell option, the audit summary, and selections that stay on
their item in every table. Only the answers to confirmation dialogs are stood in for."""

from __future__ import annotations

import json
import sys

import pytest
from desktop_harness import Confirmations, QtLoop, queue_stats, start_server
from PySide6.QtCore import Qt

from desktop.connection import Connection, ConnectionSpec, LinkState
from desktop.models.audit import AuditModel
from desktop.models.audit_summary import summarize
from desktop.models.reasons import queued_reason
from desktop.page import ConnectionPage
from desktop.views.audit import AuditView
from desktop.views.jobs import JobsView
from desktop.views.log_pane import MAX_LINES
from desktop.views.queue_dialog import QueueDialog
from desktop.views.queues import QueuesView
from desktop.views.submit_dialog import SubmitDialog
from desktop.views.work import WorkView
from embedded_service.api.auth import create_token
from embedded_service.jobs import JobSettings
from embedded_service.model import (
    AuditEntry,
    CommandSubmit,
    DeviceInfo,
    Job,
    JobKind,
    JobState,
    Role,
    Snapshot,
    WaiterInfo,
)


def job(jid: str, state: JobState = JobState.running, **fields: object) -> Job:
    values = {"id": jid, "kind": JobKind.command, "queue": "gpu", "argv": ["sleep", "60"], "state": state, "created_at": 1.0}
    return Job.model_validate({**values, **fields})


def open_page(url: str, token: str | None) -> ConnectionPage:
    conn = Connection(ConnectionSpec(name="t", url=url), token, delays=lambda attempt: 0.2)
    page = ConnectionPage(conn)
    conn.start()
    return page


# ------------------------------------------------------------- selection


def test_a_selected_job_that_is_pruned_leaves_nothing_selected(qapp) -> None:  # type: ignore[no-untyped-def]
    view = JobsView()
    view.apply_jobs([job("a"), job("b"), job("c")])
    view.table.select_ids(["b"])
    assert view.selected_job().id == "b"  # type: ignore[union-attr]
    assert view.cancel_button.isEnabled()
    view.model.remove(["b"])
    view._on_rows()  # the coalesced re-check the view runs after row changes
    assert view.selected_job() is None and view.selected_jobs() == []
    assert not view.cancel_button.isEnabled()


def test_a_selected_queue_and_audit_entry_survive_model_resets_and_clear_when_gone(qapp) -> None:  # type: ignore[no-untyped-def]
    queues = QueuesView()
    queues.apply_snapshot(Snapshot(seq=1, at=1.0, queues=[queue_stats("a"), queue_stats("b"), queue_stats("c")]))
    queues.select_queue("b")
    queues.apply_snapshot(Snapshot(seq=2, at=2.0, queues=[queue_stats("b"), queue_stats("c"), queue_stats("d")]))
    assert queues.selected_queue() == "b"  # a new set of queues resets the model: the choice stays
    queues.apply_snapshot(Snapshot(seq=3, at=3.0, queues=[queue_stats("a"), queue_stats("c")]))
    assert queues.selected_queue() is None
    assert not queues.pause_button.isEnabled() and not queues.delete_button.isEnabled()

    audit = AuditView()
    audit.add_entries([AuditEntry(id=i, at=float(i), actor="ops", action="queue.pause", target=f"q{i}") for i in (1, 2)])
    audit.table.select_ids(["1"])
    audit.add_entries([AuditEntry(id=3, at=3.0, actor="ops", action="queue.resume", target="q3")])
    assert audit.selected_entry() is not None and audit.selected_entry().id == 1  # type: ignore[union-attr]
    assert "q1" in audit.details.toPlainText()


# ------------------------------------------------------------ role-aware


def test_a_viewer_sees_its_role_and_every_action_disabled_with_a_reason(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    viewer = server.call(create_token(server.service.store, "watcher", Role.viewer))
    page = open_page(server.url, viewer)
    qloop.until(lambda: page.conn.state is LinkState.live and page.conn.role == "viewer", what="live as viewer")
    assert page.role.text() == "role: viewer"
    page.queues.select_queue("default")
    for button in (page.queues.pause_button, page.queues.add_button, page.queues.edit_button, page.jobs.submit_button):
        assert not button.isEnabled(), button.text()
        assert "Needs the" in button.toolTip() and "viewer" in button.toolTip(), button.text()
    assert not page.queues.model.editable
    qloop.run(page.conn.close())


def test_an_operator_may_act_and_a_client_may_submit_but_not_edit_queues(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    client = server.call(create_token(server.service.store, "runner", Role.client))
    page = open_page(server.url, client)
    qloop.until(lambda: page.conn.state is LinkState.live and page.conn.role == "client", what="live as client")
    page.queues.select_queue("default")
    assert page.jobs.submit_button.isEnabled()
    assert not page.queues.pause_button.isEnabled() and "operator" in page.queues.pause_button.toolTip()
    qloop.run(page.conn.close())

    operator = server.call(create_token(server.service.store, "ops", Role.operator))
    page = open_page(server.url, operator)
    qloop.until(lambda: page.conn.state is LinkState.live and page.conn.role == "operator", what="live as operator")
    page.queues.select_queue("default")
    assert page.queues.pause_button.isEnabled() and page.queues.edit_button.isEnabled()
    qloop.run(page.conn.close())


def test_a_refused_token_is_said_on_the_page_instead_of_waiting_forever(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    page = open_page(server.url, "sdk_not-a-real-token")
    qloop.until(lambda: page.conn.state is LinkState.unauthorized, what="refused")
    assert "refused this connection's token" in page.overview.empty_label.text()
    assert "Waiting for the first figures" not in page.overview.empty_label.text()
    qloop.run(page.conn.close())


# ------------------------------------------------------------ queues


def test_create_edit_and_delete_a_queue_from_the_queues_page(  # type: ignore[no-untyped-def]
    qloop: QtLoop, server, answers: Confirmations, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = open_page(server.url, server.token)
    qloop.until(lambda: page.conn.state is LinkState.live, what="live")
    svc = server.service
    page.queues.create_requested.emit("batch", {"limit": 2, "timeout_s": 60.0})
    qloop.until(lambda: "batch" in page.queues.model.names(), what="the new queue in the table")

    def fill(dialog: QueueDialog) -> int:
        dialog.editors["max_waiting"].setValue(7)  # type: ignore[attr-defined]
        dialog.unset["max_waiting"].setChecked(False)
        dialog.editors["stuck_after_s"].setValue(90.0)  # type: ignore[attr-defined]
        dialog.unset["stuck_after_s"].setChecked(False)
        dialog.editors["rate"].setValue(2.5)  # type: ignore[attr-defined]
        dialog.unset["rate"].setChecked(False)
        dialog.editors["per_gpu"].setValue(2)  # type: ignore[attr-defined]
        dialog.unset["per_gpu"].setChecked(False)
        dialog.editors["limit"].setValue(5)  # type: ignore[attr-defined]
        dialog.editors["timeout_s"].setValue(30.0)  # type: ignore[attr-defined]
        assert dialog.changes() == {
            "limit": 5,
            "max_waiting": 7,
            "timeout_s": 30.0,
            "stuck_after_s": 90.0,
            "rate": 2.5,
            "per_gpu": 2,
        }
        return 1

    monkeypatch.setattr(QueueDialog, "exec", fill)
    page.queues.select_queue("batch")
    page.queues.edit_button.click()

    def edited() -> bool:
        c = svc.queue_config("batch")
        return (c.limit, c.max_waiting, c.timeout_s, c.stuck_after_s, c.rate, c.per_gpu) == (5, 7, 30.0, 90.0, 2.5, 2)

    qloop.until(edited, what="every field changed on the server")

    def clear(dialog: QueueDialog) -> int:
        dialog.unset["max_waiting"].setChecked(True)
        dialog.unset["rate"].setChecked(True)
        assert dialog.changes() == {"max_waiting": None, "rate": None}
        return 1

    qloop.until(lambda: page.queues.model.stats("batch").config.max_waiting == 7, what="the table caught up")  # type: ignore[union-attr]
    monkeypatch.setattr(QueueDialog, "exec", clear)
    page.queues.select_queue("batch")
    page.queues.edit_button.click()
    qloop.until(
        lambda: (svc.queue_config("batch").max_waiting, svc.queue_config("batch").rate) == (None, None),
        what="optional fields cleared on the server",
    )
    page.queues.select_queue("batch")
    page.queues.delete_button.click()
    assert answers.asked[-1][0] == "Delete queue batch?"
    qloop.until(lambda: "batch" not in page.queues.model.names(), what="the queue gone from the table")
    assert page.queues.selected_queue() is None and not page.queues.delete_button.isEnabled()
    qloop.run(page.conn.close())


def test_queue_dialog_marks_operator_set_fields_and_offers_their_reset(qapp) -> None:  # type: ignore[no-untyped-def]
    config = {
        "name": "chat",
        "limit": 4,
        "paused": False,
        "max_waiting": None,
        "timeout_s": 300.0,
        "rate": None,
        "burst": 1,
        "stuck_after_s": None,
        "per_gpu": None,
        "placement": "spread",
        "overrides": {"limit": {"value": 4, "by": "ops", "at": 1_700_000_000.0}},
        "configured": {"limit": 1},
    }
    dialog = QueueDialog(config, ["chat"])
    assert "limit" in dialog.reset_boxes and "configured (1)" in dialog.reset_boxes["limit"].text()
    assert "placement" in dialog.editors
    dialog.reset_boxes["limit"].setChecked(True)
    dialog.editors["placement"].setCurrentText("pack")  # type: ignore[attr-defined]
    assert dialog.resets() == ["limit"] and dialog.changes() == {"placement": "pack"}
    older = QueueDialog({k: v for k, v in config.items() if k not in ("overrides", "configured", "placement")})
    assert older.reset_boxes == {} and "placement" not in older.editors  # an older server: no markers, no field
    creating = QueueDialog(None, ["chat"])
    creating.name.setText("chat")
    assert "exists already" in creating.problem()
    creating.name.setText("bad name!")
    assert "Name:" in creating.problem()


def test_operator_set_fields_are_marked_in_the_queues_table(qapp) -> None:  # type: ignore[no-untyped-def]
    view = QueuesView()
    view.apply_snapshot(Snapshot(seq=1, at=1.0, queues=[queue_stats("chat", 4, paused=True)]))
    assert "✎" not in view.model.index(0, 1).data()
    view.apply_details([{"name": "chat", "overrides": {"limit": {"value": 4, "by": "ops", "at": 1.0}}}])
    assert view.model.index(0, 1).data() == "4 ✎"
    assert "limit by ops" in view.model.index(0, 1).data(Qt.ItemDataRole.ToolTipRole)
    assert view.model.index(0, 2).data() == "PAUSED"
    assert view.model.index(0, 0).data(Qt.ItemDataRole.BackgroundRole) is not None  # paused rows are shaded


def test_reset_fields_on_an_older_server_says_it_cannot(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    conn = Connection(ConnectionSpec(name="t", url=server.url), server.token, delays=lambda attempt: 0.2)
    outcomes: list[str] = []
    conn.action_failed.connect(lambda what, why: outcomes.append(why))
    conn.action_done.connect(lambda what: outcomes.append("done"))
    conn.start()
    qloop.until(lambda: conn.state is LinkState.live, what="live")
    conn.reset_fields("default", ["limit"])
    qloop.until(lambda: outcomes, what="the outcome")
    # A server with the route resets; one without says so in words (never a bare "404 Not Found").
    assert outcomes[0] in ("done", "this server does not track operator overrides (no reset-fields route)")
    qloop.run(conn.close())


# ------------------------------------------------------------- jobs


def test_bulk_cancel_asks_once_and_cancels_each_open_job(qapp, answers: Confirmations) -> None:  # type: ignore[no-untyped-def]
    view = JobsView()
    view.apply_jobs([job("a"), job("b", JobState.queued), job("c", JobState.succeeded), job("d")])
    view.table.select_ids(["a", "b", "c"])
    assert view.cancel_button.text() == "Cancel 2 jobs" and view.cancel_button.isEnabled()
    cancelled: list[str] = []
    view.cancel_requested.connect(cancelled.append)
    view.cancel_button.click()
    assert len(answers.asked) == 1 and answers.asked[0][0] == "Cancel 2 jobs"
    assert sorted(cancelled) == ["a", "b"]


def test_newest_jobs_come_first_and_failed_rows_are_coloured(qloop: QtLoop, qapp) -> None:  # type: ignore[no-untyped-def]
    view = JobsView()
    view.apply_jobs([job("old", JobState.failed), job("mid", JobState.succeeded)])
    view.apply_jobs([job("new")])
    qloop.until(lambda: view.filter.job(0).id == "new", what="the newest job on top")
    assert [view.filter.job(r).id for r in range(3)] == ["new", "mid", "old"]
    failed_row = view.model.row_of("old")
    ok_row = view.model.row_of("mid")
    assert view.model.index(failed_row, 0).data(Qt.ItemDataRole.BackgroundRole) is not None  # type: ignore[arg-type]
    assert view.model.index(ok_row, 0).data(Qt.ItemDataRole.BackgroundRole) is None  # type: ignore[arg-type]


def test_retry_submits_a_copy_and_selects_it(qloop: QtLoop, server, answers: Confirmations) -> None:  # type: ignore[no-untyped-def]
    page = open_page(server.url, server.token)
    qloop.until(lambda: page.conn.state is LinkState.live, what="live")
    failures: list[tuple[str, str]] = []
    page.conn.action_failed.connect(lambda what, why: failures.append((what, why)))
    page.jobs.submit_requested.emit(_command(["false"]))
    qloop.until(lambda: any(j.state == JobState.failed for j in _jobs(page)), what="the job failed")
    first = next(j for j in _jobs(page) if j.state == JobState.failed)
    page.jobs.select_job(first.id)
    assert page.jobs.retry_button.isEnabled()
    page.jobs.retry_button.click()
    qloop.until(lambda: len(_jobs(page)) == 2 or failures, what="a new job, or a failure")
    if failures:  # a server without the retry route: said plainly
        assert "cannot retry jobs yet" in failures[0][1]
    else:
        new = next(j for j in _jobs(page) if j.id != first.id)
        assert new.argv == first.argv
        qloop.until(lambda: page.jobs.selected_job() is not None and page.jobs.selected_job().id == new.id, what="sel")
    qloop.run(page.conn.close())


def _command(argv: list[str]):  # type: ignore[no-untyped-def]
    from embedded_service.model import CommandSubmit

    return CommandSubmit(argv=argv)


def _jobs(page: ConnectionPage) -> list[Job]:
    return [page.jobs.model.job(r) for r in range(page.jobs.model.rowCount())]


def test_submit_selects_the_job_it_created(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    page = open_page(server.url, server.token)
    qloop.until(lambda: page.conn.state is LinkState.live, what="live")
    page.jobs.submit_requested.emit(_command(["sleep", "30"]))
    qloop.until(lambda: page.jobs.selected_job() is not None, what="the new job selected")
    assert page.jobs.selected_job().argv == ["sleep", "30"]  # type: ignore[union-attr]
    page.jobs.cancel_requested.emit(page.jobs.selected_job().id)  # type: ignore[union-attr]
    qloop.run(page.conn.close())


@pytest.mark.skipif(sys.platform == "win32", reason="bash")
def test_submit_with_shell_runs_the_line_in_bash(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    dialog = SubmitDialog(["default"])
    dialog.argv.setText("echo a && echo $GREETING")
    dialog.env.setPlainText("GREETING=hello\n# a comment\n")
    dialog.attempts.setValue(2)
    assert dialog.command().argv == ["echo", "a", "&&", "echo", "$GREETING"]  # type: ignore[union-attr]
    assert "without a shell" in dialog.how.text()
    dialog.shell.setChecked(True)
    command = dialog.command()
    assert command is not None and command.argv == ["bash", "-lc", "echo a && echo $GREETING"]
    assert command.env == {"GREETING": "hello"} and command.max_attempts == 2
    page = open_page(server.url, server.token)
    qloop.until(lambda: page.conn.state is LinkState.live, what="live")
    page.jobs.submit_requested.emit(command)
    qloop.until(lambda: page.jobs.selected_job() is not None, what="the new job selected")
    job_id = page.jobs.selected_job().id  # type: ignore[union-attr]
    qloop.until(lambda: page.jobs.selected_job().state == JobState.succeeded, what="done")  # type: ignore[union-attr]
    qloop.until(lambda: "hello" in page.jobs.log.toPlainText(), what="the shell's output in the log")
    assert page.jobs.log.toPlainText().split("\n") == ["──── attempt 1 of 2 ────", "a", "hello"], job_id
    dialog.env.setPlainText("not an assignment")
    assert dialog.command() is None and "Environment line 1" in dialog.error_text()
    qloop.run(page.conn.close())


def test_the_log_viewer_pages_back_through_a_large_log_to_its_first_line(qloop: QtLoop, server) -> None:  # type: ignore[no-untyped-def]
    """120,000 lines (beyond the old 100,000-line tail): "Load earlier" pages back by log position to line 1,
    the pane never holding more than its line budget; "Latest" brings the end back."""
    total = 120_000
    page = open_page(server.url, server.token)
    qloop.until(lambda: page.conn.state is LinkState.live, what="live")
    page.jobs.submit_requested.emit(_command([sys.executable, "-c", f"for i in range(1, {total + 1}): print('line', i)"]))
    qloop.until(lambda: page.jobs.selected_job() is not None, what="selected")
    qloop.until(lambda: page.jobs.selected_job().state == JobState.succeeded, timeout=60, what="done")  # type: ignore[union-attr]
    page.jobs.log_wanted.emit(page.jobs.selected_job().id)  # type: ignore[union-attr]  # re-read the finished log
    log = page.jobs.log
    qloop.until(lambda: log.toPlainText().endswith(f"line {total}"), what="the last page")
    assert "earlier not shown" in page.jobs.log_marker.text() and page.jobs.earlier_button.isEnabled()
    pages = 0
    while page.jobs.earlier_button.isEnabled():
        top = log.document().begin().text()
        page.jobs.earlier_button.click()
        qloop.until(lambda: log.document().begin().text() != top, what=f"page {pages + 2} from the end")  # noqa: B023
        pages += 1
        assert log.document().blockCount() <= MAX_LINES
    shown = log.toPlainText().split("\n")
    assert shown[0] == "──── attempt 1 of 1 ────"  # the attempt's first byte is the log's first
    assert shown[1:] == [f"line {i}" for i in range(1, len(shown))], "consecutive lines from the first, none lost"
    assert pages >= 8 and log.document().blockCount() == MAX_LINES
    marker = page.jobs.log_marker.text()
    assert marker.startswith("From the first line") and "not following" in marker
    page.jobs.log_search.setText("line 700")
    assert page.jobs.find_in_log() and log.textCursor().selectedText() == "line 700"
    page.jobs.log_pane.latest_button.click()
    qloop.until(lambda: log.toPlainText().endswith(f"line {total}"), what="the end again")
    assert not page.jobs.log_pane.latest_button.isEnabled()
    qloop.run(page.conn.close())


def test_the_log_viewer_marks_where_each_attempt_began_and_a_job_cannot_fake_one(qloop: QtLoop) -> None:
    """A job retried twice: its log shows three attempt lines from the server's index; the line it prints
    to look like one is plain output."""
    server = start_server(jobs=JobSettings(poll_s=0.05, retry_backoff_s=0.05, retry_backoff_max_s=0.05))
    try:
        page = open_page(server.url, server.token)
        qloop.until(lambda: page.conn.state is LinkState.live, what="live")
        script = (
            "import os; print('──── attempt 9 of 9 ────'); print('work', os.environ['SLOTDECK_JOB_MARK']); "
            "raise SystemExit(1)"
        )
        page.jobs.submit_requested.emit(CommandSubmit(argv=[sys.executable, "-c", script], max_attempts=3))
        qloop.until(lambda: page.jobs.selected_job() is not None, what="selected")
        job_id = page.jobs.selected_job().id  # type: ignore[union-attr]
        qloop.until(lambda: page.jobs.selected_job().state == JobState.failed, timeout=30, what="three failures")  # type: ignore[union-attr]
        qloop.until(lambda: f"work {job_id}.3" in page.jobs.log.toPlainText(), what="the third attempt's output")
        assert page.jobs.log_pane.attempt_lines() == [f"──── attempt {n} of 3 ────" for n in (1, 2, 3)]
        expected: list[str] = []
        for n in (1, 2, 3):
            expected += [f"──── attempt {n} of 3 ────", "──── attempt 9 of 9 ────", f"work {job_id}.{n}"]
        assert page.jobs.log.toPlainText().split("\n") == expected
        qloop.run(page.conn.close())
    finally:
        server.stop()


def test_why_a_queued_job_waits(qapp) -> None:  # type: ignore[no-untyped-def]
    queued = job("j", JobState.queued, queue="q", gpus=1, gpu_mem_mib=40_000)
    full = queue_stats("q", 2, in_use=2, waiting=3, paused=True)
    snap = Snapshot(
        seq=1,
        at=100.0,
        queues=[full],
        waiters=[WaiterInfo(id="w", queue="q", enqueued_at=1.0, position=2, job_id="j")],
        devices=[DeviceInfo(index=0, memory_total_mib=24_000, memory_used_mib=4_000)],
    )
    reason = queued_reason(queued, snap)
    assert "queue q is paused" in reason and "2 ahead of it in line" in reason and "all 2 slots in use" in reason
    assert "needs 40,000 MiB GPU memory" in reason and "20,000 MiB" in reason
    assert queued_reason(job("r"), snap) == ""


# ------------------------------------------------------------- audit


def test_audit_lines_say_what_changed_and_export_what_is_shown(qapp) -> None:  # type: ignore[no-untyped-def]
    entries = [
        AuditEntry(
            id=1,
            at=1.0,
            actor="ops",
            action="queue.update",
            target="chat",
            before={"name": "chat", "limit": 1, "paused": False},
            after={"name": "chat", "limit": 4, "paused": False},
        ),
        AuditEntry(id=2, at=2.0, actor="ops", action="queue.pause", target="chat"),
        AuditEntry(id=3, at=3.0, actor="admin", action="job.cancel", target="j1", before="running", after="cancelled"),
    ]
    assert summarize(entries[0]) == "limit 1 -> 4"
    assert summarize(entries[1]) == "paused"
    assert summarize(entries[2]) == "job cancelled (running -> cancelled)"
    view = AuditView()
    view.add_entries(entries)
    assert view.model.index(2, 4).data() == "limit 1 -> 4"
    view.actor_filter.setCurrentIndex(view.actor_filter.findData("ops"))
    assert view.filter.rowCount() == 2
    view.kind_filter.setCurrentIndex(view.kind_filter.findData("job"))
    assert view.filter.rowCount() == 0
    view.actor_filter.setCurrentIndex(0)
    assert view.filter.rowCount() == 1
    exported = json.loads(view.export_text("json"))
    assert [e["id"] for e in exported] == [3] and exported[0]["summary"].startswith("job cancelled")
    view.kind_filter.setCurrentIndex(0)
    csv_text = view.export_text("csv")
    assert csv_text.splitlines()[0].startswith("id,when,at,actor,action,target,summary")
    assert "limit 1 -> 4" in csv_text and len(csv_text.splitlines()) == 4
    view.table.select_ids(["1"])
    assert '"limit": 1' in view.details.toPlainText() and '"limit": 4' in view.details.toPlainText()
    assert isinstance(view.model, AuditModel)


def test_work_actions_follow_the_role(qapp) -> None:  # type: ignore[no-untyped-def]
    from embedded_service.model import LeaseInfo

    view = WorkView()
    view.apply_snapshot(Snapshot(seq=1, at=1.0, queues=[], leases=[LeaseInfo(id="l", queue="q", fence=1, granted_at=1.0)]))
    view.leases_table.selectRow(0)
    assert view.revoke_button.isEnabled()
    view.set_role("client")
    assert not view.revoke_button.isEnabled() and "operator" in view.revoke_button.toolTip()
    view.set_role("")  # unknown (an older server): the server decides
    assert view.revoke_button.isEnabled()


# ------------------------------------------------------------- overview


def test_overview_summary_integer_ticks_limit_on_top_paused_shading(qtbot) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from desktop.views.overview import CountAxis, OverviewView, paused_spans

    view = OverviewView()
    qtbot.addWidget(view)
    view.resize(1200, 700)
    view.show()
    full = queue_stats("chat", 4, in_use=4, waiting=2, paused=True)
    view.apply_snapshot(Snapshot(seq=1, at=1_000.0, queues=[full]))
    panel = view._panels["queue:chat"]
    summary = panel.summary.text()
    assert "<b>4/4</b> in use" in summary and "<b>2</b> waiting" in summary and "PAUSED" in summary
    axis = view.plot_widget("queue:chat").getPlotItem().getAxis("left")
    assert isinstance(axis, CountAxis)
    assert all(spacing >= 1 and spacing == int(spacing) for spacing, _ in axis.tickSpacing(0, 2.4, 200))
    assert axis.tickStrings([0.0, 1.0, 2.0], 1, 1) == ["0", "1", "2"]
    assert view.curve("queue:chat", "limit").zValue() > view.curve("queue:chat", "in use").zValue()
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert paused_spans(t, np.array([0, 1, 1, 0, 1.0]), (0.0, 10.0)) == [(2.0, 4.0), (5.0, 10.0)]
    view.apply_snapshot(Snapshot(seq=2, at=1_001.0, queues=[full]))
    view.redraw()
    assert any(region.isVisible() for region in panel._paused_regions), "the paused period is shaded"


def test_theme_switch_recolours_titles_legends_and_axes(window) -> None:  # type: ignore[no-untyped-def]
    import pyqtgraph as pg

    page = next(iter(window.pages.values()))
    key = page.overview.plot_keys()[0]
    plot = page.overview.plot_widget(key).getPlotItem()
    before = window.settings.theme()
    window.toggle_theme()
    fg = pg.mkColor(pg.getConfigOption("foreground")).name()
    assert fg in plot.titleLabel.item.toHtml() or plot.titleLabel.opts.get("color") == fg
    legend = page.overview._panels[key].legend
    assert all(label.opts.get("color") == fg for _, label in legend.items)
    assert plot.getAxis("left").textPen().color().name() == fg
    window.toggle_theme()
    assert window.settings.theme() == before
    fg = pg.mkColor(pg.getConfigOption("foreground")).name()
    assert all(label.opts.get("color") == fg for _, label in legend.items)


# ------------------------------------------------------------- fleet and dialogs


def test_ten_servers_fit_the_fleet_table_without_scrolling(qtbot) -> None:  # type: ignore[no-untyped-def]
    from desktop.views.fleet import FleetView

    fleet = FleetView()
    qtbot.addWidget(fleet)
    conns = [Connection(ConnectionSpec(name=f"gpu-{i:02d}", url=f"http://127.0.0.1:{9000 + i}"), None) for i in range(10)]
    fleet.set_connections(conns, "gpu-03")
    fleet.resize(1280, fleet.height())
    fleet.show()
    table = fleet.table
    assert table.rowViewportPosition(9) + table.rowHeight(9) <= table.viewport().height(), "all ten rows shown"
    assert fleet.chosen() == "gpu-03"
    assert [fleet.model.index(r, 1).data() for r in range(2)] == ["closed", "closed"]
    chosen: list[str] = []
    fleet.server_chosen.connect(chosen.append)
    table.setCurrentIndex(fleet.model.index(7, 0))
    assert chosen == ["gpu-07"]


def test_settings_dialog_and_alert_history(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    from desktop.views.alerts import AlertHistoryDialog
    from desktop.views.settings_dialog import SettingsDialog

    dialog = SettingsDialog(window.settings)
    qtbot.addWidget(dialog)
    dialog.waiting_alert.setValue(3)
    dialog.stale_after.setValue(12)
    dialog.redraws.setValue(2)
    dialog.save()
    assert (window.settings.waiting_alert(), window.settings.stale_after_s(), window.settings.redraws_per_s()) == (3, 12, 2)
    window.notifier.waiting_threshold = 3
    window.notifier.check_snapshot("box", Snapshot(seq=1, at=1.0, queues=[queue_stats("chat", waiting=5)]))
    assert window.notifier.active_count("box") == 1
    history = AlertHistoryDialog(window.notifier)
    qtbot.addWidget(history)
    assert history.table.rowCount() == 1 and "chat is backing up" in history.table.item(0, 2).text()
    window.notifier.check_snapshot("box", Snapshot(seq=2, at=2.0, queues=[queue_stats("chat", waiting=0)]))
    assert window.notifier.active_count("box") == 0 and history.table.rowCount() == 1, "history keeps it"


def test_add_server_dialog_tests_the_connection_and_shows_the_token(qloop: QtLoop, server, qtbot) -> None:  # type: ignore[no-untyped-def]
    from desktop.views.connect_dialog import ConnectDialog

    dialog = ConnectDialog(set())
    qtbot.addWidget(dialog)
    dialog.url.setText(server.url)
    dialog.token.setText("sdk_wrong")
    assert "refused the token" in qloop.run(dialog.test_connection())
    dialog.token.setText(server.token)
    result = qloop.run(dialog.test_connection())
    assert result.startswith("Connected to SlotDeck") and "role admin" in result
    assert dialog.token.echoMode() == dialog.token.EchoMode.Password
    dialog.show_token.setChecked(True)
    assert dialog.token.echoMode() == dialog.token.EchoMode.Normal
    editing = ConnectDialog({"other"}, edit=ConnectionSpec("box", server.url))
    qtbot.addWidget(editing)
    assert editing.name.text() == "box" and editing.name.isReadOnly() and editing.url.text() == server.url
    assert editing.problem() is None


def test_about_names_the_version(window, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QMessageBox

    from embedded_service import __version__

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "about", lambda parent, title, text: shown.append(text))
    window._about()
    assert shown and __version__ in shown[0]


def test_a_server_out_of_focus_records_points_but_makes_no_plots(qtbot) -> None:  # type: ignore[no-untyped-def]
    conn = Connection(ConnectionSpec(name="bg", url="http://127.0.0.1:9"), None)
    page = ConnectionPage(conn)
    qtbot.addWidget(page)
    page.resize(1200, 800)
    page.show()
    page.set_active(False)
    for i in range(3):
        snap = Snapshot(seq=i, at=1_000.0 + i, queues=[queue_stats("chat", 4, in_use=i)])
        conn.last_snapshot = snap
        page._on_snapshot(snap)
    assert page.overview.plot_keys() == [] and len(page.overview.book.get("queue:chat")) == 3  # type: ignore[arg-type]
    assert page.queues.model.rowCount() == 0, "tables wait for focus"
    page.set_active(True)
    assert page.overview.plot_keys() == ["queue:chat", "host"]
    assert page.queues.model.names() == ["chat"] and "<b>2/4</b>" in page.overview._panels["queue:chat"].summary.text()
    qtbot.waitUntil(lambda: page.overview.curve("queue:chat", "in use").getOriginalDataset()[1] is not None)
    _, y = page.overview.curve("queue:chat", "in use").getOriginalDataset()
    assert list(y) == [0.0, 1.0, 2.0], "the points recorded out of focus are drawn"


def test_a_background_connection_reads_at_most_two_snapshots_a_second(qapp) -> None:  # type: ignore[no-untyped-def]
    now = [100.0]
    conn = Connection(ConnectionSpec(name="bg", url="http://127.0.0.1:9"), None, clock=lambda: now[0])
    got: list[Snapshot] = []
    conn.snapshot_received.connect(got.append)
    data = Snapshot(seq=1, at=1.0, queues=[queue_stats("chat")]).model_dump(mode="json")
    for _ in range(5):  # in focus: every one (8 Hz: steps exact in binary)
        conn._dispatch("snapshot", data)
        now[0] += 0.125
    assert len(got) == 5
    conn.background = True
    for _ in range(16):  # two seconds at 8 Hz out of focus: four
        conn._dispatch("snapshot", data)
        now[0] += 0.125
    assert len(got) == 9
    assert conn.data_age_s() == 0.125, "skipped snapshots still count as news"


def test_pausing_a_queue_widens_its_state_column_to_fit(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = QueuesView()
    qtbot.addWidget(view)
    view.resize(1200, 400)
    view.show()
    view.apply_snapshot(Snapshot(seq=1, at=1.0, queues=[queue_stats("chat"), queue_stats("train")]))
    view.apply_snapshot(Snapshot(seq=2, at=2.0, queues=[queue_stats("chat", paused=True), queue_stats("train")]))
    view.apply_details([{"name": "train", "overrides": {"paused": {"value": False, "by": "ops", "at": 1.0}}}])
    view.apply_snapshot(Snapshot(seq=3, at=3.0, queues=[queue_stats("chat", paused=True), queue_stats("train")]))
    for column in (1, 2):  # limit and state, with the operator-set marks
        assert view.table.columnWidth(column) >= view.table.sizeHintForColumn(column), column
