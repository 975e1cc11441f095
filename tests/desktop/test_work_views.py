"""The Work panel as an operator uses it: waiters and leases, job actions, the log tail and the submit dialog.

Real widgets and models throughout; the only stand-in is the answer to the
modal confirmation (`desktop.views.confirm.confirm`).
"""

from __future__ import annotations

from collections.abc import Sequence

from desktop_harness import Confirmations
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtWidgets import QDialog, QTableView

from desktop.models.jobs import Column
from desktop.models.work import LeasesModel, WaitersModel
from desktop.views.jobs import JobsView
from desktop.views.submit_dialog import SubmitDialog
from desktop.views.work import WorkView
from embedded_service.model import (
    CommandSubmit,
    Job,
    JobKind,
    JobLogPage,
    JobState,
    LeaseInfo,
    LogPart,
    Snapshot,
    WaiterInfo,
)


def snapshot(waiters: Sequence[WaiterInfo] = (), leases: Sequence[LeaseInfo] = (), at: float = 1_000.0) -> Snapshot:
    return Snapshot(seq=1, at=at, queues=[], waiters=list(waiters), leases=list(leases))


def waiter(wid: str, **fields: object) -> WaiterInfo:
    return WaiterInfo.model_validate({"id": wid, "queue": "gpu", "owner": "alice", "enqueued_at": 990.0, **fields})


def lease(lid: str, **fields: object) -> LeaseInfo:
    return LeaseInfo.model_validate({"id": lid, "queue": "gpu", "owner": "bob", "fence": 7, "granted_at": 900.0, **fields})


def job(jid: str, state: JobState = JobState.running, **fields: object) -> Job:
    values = {"id": jid, "kind": JobKind.command, "queue": "gpu", "argv": ["sleep", "60"], "state": state, "created_at": 1.0}
    return Job.model_validate({**values, **fields})


def select_row(table: QTableView, row: int) -> None:
    flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
    table.selectionModel().select(table.model().index(row, 0), flags)


# ---------------------------------------------------------------- models


def test_waiter_time_left_and_age_follow_the_injected_clock(qapp) -> None:  # type: ignore[no-untyped-def]
    now = [1_000.0]
    model = WaitersModel(clock=lambda: now[0])
    model.apply_snapshot(snapshot([waiter("w1", deadline=1_030.0, position=2), waiter("w2", deadline=None)]))
    cell = lambda row, column: model.index(row, column).data()  # noqa: E731
    assert cell(0, WaitersModel.TIME_LEFT) == "30.0s"
    assert cell(0, WaitersModel.AGE) == "10.0s"
    assert cell(0, WaitersModel.POSITION) == "2"
    assert cell(1, WaitersModel.TIME_LEFT) == "no deadline"
    now[0] = 1_020.0
    assert cell(0, WaitersModel.TIME_LEFT) == "10.0s"
    assert cell(0, WaitersModel.AGE) == "30.0s"
    now[0] = 1_045.0
    assert cell(0, WaitersModel.TIME_LEFT) == "0.0s"  # past the deadline: no time left, not a negative one


def test_snapshots_replace_rows_by_id_without_resets(qapp) -> None:  # type: ignore[no-untyped-def]
    model = LeasesModel(clock=lambda: 1_000.0)
    model.apply_snapshot(snapshot(leases=[lease("a"), lease("b"), lease("c")]))
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    model.apply_snapshot(snapshot(leases=[lease("c", stuck=True), lease("d"), lease("a")]))
    assert [model.lease(r).id for r in range(model.rowCount())] == ["a", "c", "d"]
    assert resets == []
    assert model.index(1, LeasesModel.STUCK).data() == "stuck"
    assert model.index(1, 0).data(Qt.ItemDataRole.BackgroundRole) is not None
    assert model.index(0, 0).data(Qt.ItemDataRole.BackgroundRole) is None
    assert model.index(0, LeasesModel.HELD).data() == "1m 40s"


def test_a_grant_that_moves_every_waiter_up_is_one_change_signal(qapp) -> None:  # type: ignore[no-untyped-def]
    model = WaitersModel(clock=lambda: 1_000.0)
    model.apply_snapshot(snapshot([waiter(f"w{i}", position=i) for i in range(1, 1001)]))
    changes: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda first, last, *_: changes.append((first.row(), last.row())))
    model.apply_snapshot(snapshot([waiter(f"w{i}", position=i - 1) for i in range(2, 1001)]))  # w1 was granted
    assert [model.waiter(r).position for r in (0, 998)] == [1, 999]
    assert changes == [(0, 998)]
    bumped = [waiter(f"w{i}", position=i - 1, priority=5 if i in (3, 4, 9) else 0) for i in range(2, 1001)]
    model.apply_snapshot(snapshot(bumped))
    assert changes[1:] == [(1, 2), (7, 7)]  # neighbours share a signal, others get their own


# ---------------------------------------------------------------- WorkView


def test_cancel_waiter_asks_and_emits_only_on_yes(qtbot, answers: Confirmations) -> None:  # type: ignore[no-untyped-def]
    view = WorkView()
    qtbot.addWidget(view)
    view.apply_snapshot(snapshot([waiter("w1"), waiter("w2", owner="carol")]))
    emitted: list[str] = []
    view.cancel_waiter_requested.connect(emitted.append)
    assert not view.cancel_button.isEnabled()  # nothing selected

    select_row(view.waiters_table, 1)
    answers.replies.append(False)
    view.cancel_button.click()
    assert emitted == []
    answers.replies.append(True)
    view.cancel_button.click()
    assert emitted == ["w2"]
    assert "carol" in answers.asked[-1][1]

    view.apply_snapshot(snapshot([waiter("w2", owner="carol", position=1), waiter("w3")]))
    assert view.selected_waiter() is not None and view.selected_waiter().id == "w2"  # the pick survives snapshots
    view.apply_snapshot(snapshot([waiter("w3")]))
    assert view.selected_waiter() is None and not view.cancel_button.isEnabled()


def test_force_release_explains_the_holder_is_cancelled(qtbot, answers: Confirmations) -> None:  # type: ignore[no-untyped-def]
    view = WorkView()
    qtbot.addWidget(view)
    view.apply_snapshot(snapshot(leases=[lease("l1", job_id="j42")]))
    emitted: list[str] = []
    view.revoke_requested.connect(emitted.append)
    select_row(view.leases_table, 0)

    answers.replies.extend([False, True])
    view.revoke_button.click()
    assert emitted == []
    view.revoke_button.click()
    assert emitted == ["l1"]
    assert "j42 is stopped as if cancelled" in answers.asked[-1][1]

    view.set_read_only(True)
    assert not view.revoke_button.isEnabled()
    view.revoke_button.click()
    assert emitted == ["l1"]


# ---------------------------------------------------------------- JobsView


def test_cancel_job_with_no_emits_nothing_and_with_yes_emits_the_id(qtbot, answers: Confirmations) -> None:  # type: ignore[no-untyped-def]
    view = JobsView()
    qtbot.addWidget(view)
    view.apply_jobs([job("j1"), job("j2", JobState.succeeded)])
    emitted: list[str] = []
    view.cancel_requested.connect(emitted.append)

    view.table.selectRow(view.filter.row_of("j2"))
    assert not view.cancel_button.isEnabled()  # a finished job cannot be cancelled
    view.table.selectRow(view.filter.row_of("j1"))
    assert view.cancel_button.isEnabled()
    answers.replies.append(False)
    view.cancel_button.click()
    assert emitted == []
    answers.replies.append(True)
    view.cancel_button.click()
    assert emitted == ["j1"]

    view.apply_jobs([job("j1", JobState.cancelled)])
    assert not view.cancel_button.isEnabled()
    assert view.details["State"].text() == "cancelled"  # the details pane follows updates
    view.apply_jobs([job("j3")])
    view.table.selectRow(view.filter.row_of("j3"))
    view.set_read_only(True)
    assert not view.cancel_button.isEnabled() and not view.submit_button.isEnabled()


def test_log_follows_the_selected_job_only(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = JobsView()
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    view.apply_jobs([job("a"), job("b")])
    wanted: list[str] = []
    view.log_wanted.connect(wanted.append)

    view.table.selectRow(view.filter.row_of("a"))
    assert wanted == ["a"]
    view.show_log_page("a", _page("line 0\n"), True)
    view.append_log("a", [f"line {i}\n" for i in range(1, 200)])
    view.append_log("b", ["from b"])
    view.show_log_page("b", _page("tail of b\n"), True)
    text = view.log.toPlainText()
    assert text.startswith("line 0\nline 1\n") and text.endswith("line 199")
    assert "from b" not in text and "tail of b" not in text
    bar = view.log.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()  # following the end

    view.table.selectRow(view.filter.row_of("b"))
    assert wanted == ["a", "b"]
    assert view.log.toPlainText() == ""
    view.append_log("a", ["late line of a"])
    view.append_log("b", ["b1", "b2"])
    assert view.log.toPlainText() == "b1\nb2"

    view.table.clearSelection()
    assert wanted == ["a", "b", ""]
    view.append_log("b", ["b3"])
    assert view.log.toPlainText() == ""

    view.table.selectRow(view.filter.row_of("a"))
    view.state_actions[JobState.queued].setChecked(True)  # hides the selected job: stop following it
    qtbot.waitUntil(lambda: wanted[-1] == "")
    assert wanted == ["a", "b", "", "a", ""]


def test_filter_bar_and_header_sort(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = JobsView()
    qtbot.addWidget(view)
    view.set_queues(["cpu", "gpu"])
    view.apply_jobs(
        [
            job("j1", JobState.running, queue="gpu", owner="alice", priority=10),
            job("j2", JobState.queued, queue="cpu", owner="bob", priority=9),
            job("j3", JobState.running, queue="cpu", owner="bob", priority=100, argv=["python", "Train.py"]),
        ]
    )
    ids = lambda: [view.filter.job(r).id for r in range(view.filter.rowCount())]  # noqa: E731

    view.state_actions[JobState.running].setChecked(True)
    assert ids() == ["j1", "j3"] and view.states_button.text() == "running"
    view.queue_filter.setCurrentIndex(view.queue_filter.findData("cpu"))
    assert ids() == ["j3"]
    view.state_actions[JobState.running].setChecked(False)
    view.owner_filter.setText("bob")
    qtbot.waitUntil(lambda: ids() == ["j2", "j3"])
    view.text_filter.setText("train")
    qtbot.waitUntil(lambda: ids() == ["j3"])
    qtbot.waitUntil(lambda: view.count.text() == "1 of 3 jobs")
    view.queue_filter.setCurrentIndex(0)
    view.owner_filter.clear()
    view.text_filter.clear()
    qtbot.waitUntil(lambda: len(ids()) == 3)

    view.table.horizontalHeader().setSortIndicator(Column.PRIORITY, Qt.SortOrder.AscendingOrder)
    assert ids() == ["j2", "j1", "j3"]  # 9 < 10 < 100: numbers, not text
    view.table.horizontalHeader().setSortIndicator(Column.PRIORITY, Qt.SortOrder.DescendingOrder)
    assert ids() == ["j3", "j1", "j2"]


def test_submit_button_opens_the_dialog_and_emits_the_command(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = JobsView()
    qtbot.addWidget(view)
    view.set_queues(["default", "gpu"])
    submitted: list[CommandSubmit] = []
    view.submit_requested.connect(submitted.append)

    view.submit_button.click()
    dialog = view.findChild(SubmitDialog)
    assert dialog is not None and dialog.isVisible()
    dialog.argv.setText("python -c 'print(1)'")
    dialog.queue.setCurrentText("gpu")
    dialog.gpus.setValue(1)
    dialog.accept()
    assert [s.argv for s in submitted] == [["python", "-c", "print(1)"]]
    assert submitted[0].queue == "gpu" and submitted[0].gpus == 1


# ---------------------------------------------------------------- SubmitDialog


def test_submit_dialog_parses_quoted_argv(qtbot) -> None:  # type: ignore[no-untyped-def]
    dialog = SubmitDialog(["default", "gpu"])
    qtbot.addWidget(dialog)
    assert dialog.queue.currentText() == "default"
    dialog.argv.setText("""python -c 'print("a b")' --name "x y" plain\\ word""")
    dialog.queue.setCurrentText("gpu")
    dialog.gpus.setValue(2)
    dialog.gpu_mem.setValue(8192)
    dialog.priority.setValue(-5)
    dialog.max_runtime.setValue(600)
    command = dialog.command()
    assert command == CommandSubmit(
        argv=["python", "-c", 'print("a b")', "--name", "x y", "plain word"],
        queue="gpu",
        gpus=2,
        gpu_mem_mib=8192,
        priority=-5,
        max_runtime_s=600.0,
    )
    dialog.max_runtime.setValue(0)
    assert dialog.command().max_runtime_s is None  # "no limit"
    assert dialog.error_text() == ""


def test_submit_dialog_reports_mistakes_in_plain_words_and_stays_open(qtbot) -> None:  # type: ignore[no-untyped-def]
    dialog = SubmitDialog(["default"])
    qtbot.addWidget(dialog)
    dialog.show()

    dialog.argv.setText("python -c 'print(1)")
    assert dialog.command() is None
    assert "unbalanced quote" in dialog.error_text()
    dialog.accept()
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted

    dialog.argv.setText("   ")
    assert dialog.command() is None and dialog.error_text() == "Enter the command to run."

    dialog.argv.setText("sleep 1")
    dialog.queue.setCurrentText("no spaces allowed")
    assert dialog.command() is None
    assert dialog.error_text().startswith("Queue: use letters, digits")
    assert "Traceback" not in dialog.error_text() and "pattern" not in dialog.error_text()

    dialog.queue.setCurrentText("default")
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted


# ------------------------------------------------- selection follows the item


def test_a_selected_waiter_that_leaves_is_not_replaced_by_its_neighbour(qapp) -> None:  # type: ignore[no-untyped-def]
    """The seen bug: the selected waiter left and the next one (another queue's) became selected, with
    Cancel waiter still enabled on it."""
    view = WorkView()
    view.apply_snapshot(snapshot([waiter("w1"), waiter("w2", queue="cpu"), waiter("w3", queue="llm")]))
    view.waiters_table.selectRow(1)
    view.waiters_table.setCurrentIndex(view.waiters_table.model().index(1, 0))
    assert view.selected_waiter() is not None and view.selected_waiter().id == "w2"  # type: ignore[union-attr]
    assert view.cancel_button.isEnabled()
    view.apply_snapshot(snapshot([waiter("w1"), waiter("w3", queue="llm")]))
    assert view.selected_waiter() is None
    assert not view.cancel_button.isEnabled()
    view.apply_snapshot(snapshot([waiter("w3", queue="llm"), waiter("w4")]))  # later snapshots pick nothing either
    assert view.selected_waiter() is None
    assert not view.cancel_button.isEnabled()


def test_a_selected_lease_stays_on_its_id_while_others_come_and_go(qapp) -> None:  # type: ignore[no-untyped-def]
    view = WorkView()
    view.apply_snapshot(snapshot(leases=[lease("a", fence=1), lease("b", fence=2), lease("c", fence=3)]))
    view.leases_table.selectRow(1)
    view.apply_snapshot(snapshot(leases=[lease("b", fence=2), lease("c", fence=3), lease("d", fence=4)]))
    assert view.selected_lease().id == "b"  # type: ignore[union-attr]
    view.leases_table.sortByColumn(LeasesModel.FENCE, Qt.SortOrder.DescendingOrder)
    assert view.selected_lease().id == "b"  # type: ignore[union-attr]
    view.apply_snapshot(snapshot(leases=[lease("c", fence=3), lease("d", fence=4)]))
    assert view.selected_lease() is None
    assert not view.revoke_button.isEnabled()


def _page(text: str) -> JobLogPage:
    """A job's whole log as one page (from its first line)."""
    size = len(text.encode())
    return JobLogPage(start=0, end=size, first=0, parts=[LogPart(text=text)])
