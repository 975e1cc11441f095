"""Queues table (limit edited in place, risky changes confirmed) and the audit log model."""

from __future__ import annotations

from desktop_harness import queue_stats
from PySide6.QtCore import Qt

from desktop.models.audit import AuditModel
from desktop.models.queues import LIMIT_COLUMN, QueuesModel
from desktop.views.queues import QueuesView, limit_risk
from embedded_service.model import AuditEntry, QueueStats, Snapshot


def snap(*queues: QueueStats, seq: int = 1) -> Snapshot:
    return Snapshot(seq=seq, at=1_700_000_000.0, queues=list(queues))


def test_rows_follow_snapshots_without_reset_when_queues_stay(qtbot) -> None:  # type: ignore[no-untyped-def]
    model = QueuesModel()
    model.apply_snapshot(snap(queue_stats("train", 1), queue_stats("chat", 3)))
    assert model.names() == ["chat", "train"]
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    model.apply_snapshot(snap(queue_stats("train", 1, in_use=1), queue_stats("chat", 3, waiting=5)))
    assert resets == []
    assert model.data(model.index(0, 4)) == "5"
    assert model.data(model.index(1, 3)) == "1 / 1"
    model.apply_snapshot(snap(queue_stats("chat", 3)))
    assert resets == [1] and model.names() == ["chat"]


def test_editing_the_limit_asks_the_connection_not_the_model(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = QueuesView()
    qtbot.addWidget(view)
    view.apply_snapshot(snap(queue_stats("chat", 3)))
    requested: list[tuple[str, int]] = []
    view.limit_requested.connect(lambda q, n: requested.append((q, n)))
    index = view.model.index(0, LIMIT_COLUMN)
    assert view.model.flags(index) & Qt.ItemFlag.ItemIsEditable
    view.model.setData(index, 6)
    assert requested == [("chat", 6)]
    assert view.model.data(index) == "3", "the table shows the service's limit until a snapshot confirms it"
    view.model.setData(index, "nonsense")
    view.model.setData(index, -1)
    assert requested == [("chat", 6)]


def test_risky_limit_changes_ask_first(qtbot, answers) -> None:  # type: ignore[no-untyped-def]
    view = QueuesView()
    qtbot.addWidget(view)
    view.apply_snapshot(snap(queue_stats("chat", 4, in_use=3, waiting=2)))
    requested: list[tuple[str, int]] = []
    view.limit_requested.connect(lambda q, n: requested.append((q, n)))
    index = view.model.index(0, LIMIT_COLUMN)
    answers.replies.extend([False, True])
    view.model.setData(index, 0)
    assert requested == []
    view.model.setData(index, 1)
    assert requested == [("chat", 1)]
    view.model.setData(index, 8)  # raising is not risky: no question
    assert requested[-1] == ("chat", 8) and len(answers.asked) == 2


def test_limit_risk_wording() -> None:
    q = queue_stats("gpu", 4, in_use=3, waiting=2)
    assert "admits nobody" in (limit_risk(q, 0) or "")
    assert "not stopped" in (limit_risk(q, 2) or "")
    assert limit_risk(q, 3) is None


def test_pause_resume_reset_buttons(qtbot, answers) -> None:  # type: ignore[no-untyped-def]
    view = QueuesView()
    qtbot.addWidget(view)
    events: list[str] = []
    view.pause_requested.connect(lambda q: events.append(f"pause {q}"))
    view.resume_requested.connect(lambda q: events.append(f"resume {q}"))
    view.reset_marks_requested.connect(lambda q: events.append(f"reset {q}"))
    view.apply_snapshot(snap(queue_stats("chat", 2, waiting=3), queue_stats("idle", 1, paused=True)))
    assert not view.pause_button.isEnabled(), "nothing selected, nothing to pause"
    view.select_queue("chat")
    assert view.pause_button.isEnabled() and not view.resume_button.isEnabled()
    answers.replies.extend([False, True])
    view.pause_button.click()  # 3 waiting: asks, operator says no
    view.pause_button.click()
    assert events == ["pause chat"]
    view.select_queue("idle")
    assert view.resume_button.isEnabled() and not view.pause_button.isEnabled()
    view.resume_button.click()
    answers.replies.append(True)
    view.reset_button.click()
    assert events == ["pause chat", "resume idle", "reset idle"]
    view.apply_snapshot(snap(queue_stats("chat", 2), queue_stats("idle", 1, paused=True), queue_stats("new", 1)))
    assert view.selected_queue() == "idle", "selection survives a new queue appearing"
    view.set_read_only(True)
    assert not view.resume_button.isEnabled() and not view.model.flags(view.model.index(0, LIMIT_COLUMN)) & (
        Qt.ItemFlag.ItemIsEditable
    )


def test_audit_model_newest_first_and_replay_deduplicated() -> None:
    model = AuditModel()
    first = [
        AuditEntry(
            id=1, at=100.0, actor="ops", action="queue.limit", target="chat", before={"limit": 3}, after={"limit": 5}
        ),
        AuditEntry(id=2, at=101.0, actor="ops", action="queue.pause", target="chat"),
    ]
    model.add(first)
    model.add([first[1], AuditEntry(id=3, at=102.0, actor="admin", action="token.create", target="bob")])
    assert model.rowCount() == 3
    assert [model.entry(r).id for r in range(3)] == [3, 2, 1]
    assert model.data(model.index(2, 4)) == "limit 3 -> 5"  # a summary, not the JSON
    assert '"limit": 3' in model.data(model.index(2, 4), Qt.ItemDataRole.ToolTipRole)  # the full before on demand
    assert model.data(model.index(2, 1)) == "ops"


def test_a_snapshot_leaves_the_limit_cell_alone_unless_the_limit_changed(qtbot) -> None:  # type: ignore[no-untyped-def]
    model = QueuesModel()
    model.apply_snapshot(snap(queue_stats("chat", 3)))
    touched: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda first, last, *_: touched.append((first.column(), last.column())))
    model.apply_snapshot(snap(queue_stats("chat", 3, in_use=2)))
    assert touched and all(not (a <= LIMIT_COLUMN <= b) for a, b in touched), "an open limit editor is not reset"
    touched.clear()
    model.apply_snapshot(snap(queue_stats("chat", 5, in_use=2)))
    assert any(a <= LIMIT_COLUMN <= b for a, b in touched)
    model.editable = False
    edits: list[int] = []
    model.limit_edited.connect(lambda _q, n: edits.append(n))
    assert model.setData(model.index(0, LIMIT_COLUMN), 9) is False and edits == [], "no edit lands while read-only"

