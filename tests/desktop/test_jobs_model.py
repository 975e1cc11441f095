"""JobsModel and JobsFilter: what the jobs table shows, in what order, and how it follows updates."""

from __future__ import annotations

import time

from PySide6.QtCore import QPersistentModelIndex, Qt

from desktop.models.jobs import STUCK_BRUSH, Column, JobsFilter, JobsModel
from embedded_service.model import Job, JobKind, JobState, LeaseInfo, Marks, QueueConfig, QueueStats, Snapshot, Totals

BACKGROUND = Qt.ItemDataRole.BackgroundRole
STATES = list(JobState)


def make_job(i: int, **fields: object) -> Job:
    values: dict[str, object] = {
        "id": f"j{i:05x}",
        "kind": JobKind.command,
        "queue": f"q{i % 10}",
        "owner": f"user{i % 37}",
        "argv": ["python", "-c", f"print({i})"],
        "priority": (i * 7919) % 201 - 100,
        "state": STATES[i % len(STATES)],
        "created_at": 1000.0 + i,
    }
    values.update(fields)
    return Job.model_validate(values)


def shown(proxy: JobsFilter, column: Column) -> list[str]:
    return [proxy.index(row, column).data() for row in range(proxy.rowCount())]


def recorder(model: JobsModel) -> dict[str, list[tuple[int, int]]]:
    seen: dict[str, list[tuple[int, int]]] = {"changed": [], "inserted": [], "reset": [], "layout": []}
    model.dataChanged.connect(lambda a, b, roles=(): seen["changed"].append((a.row(), b.row())))
    model.rowsInserted.connect(lambda _parent, first, last: seen["inserted"].append((first, last)))
    model.modelReset.connect(lambda: seen["reset"].append((0, 0)))
    model.layoutChanged.connect(lambda *_: seen["layout"].append((0, 0)))
    return seen


def test_100k_jobs_load_and_an_update_of_1000_changes_rows_in_place(qapp) -> None:  # type: ignore[no-untyped-def]
    model = JobsModel(clock=lambda: 200_000.0)
    proxy = JobsFilter(model)
    jobs = [make_job(i) for i in range(100_000)]
    seen = recorder(model)
    started = time.perf_counter()
    for first in range(0, len(jobs), 1000):  # as the connection backfills: pages of 1000
        model.upsert(jobs[first : first + 1000])
    loaded = time.perf_counter() - started
    assert model.rowCount() == proxy.rowCount() == 100_000
    assert seen["inserted"][0] == (0, 999) and seen["inserted"][-1] == (99_000, 99_999)

    for key in seen:
        seen[key].clear()
    changed = [job.model_copy(update={"state": JobState.failed, "exit_code": 3}) for job in jobs[::100]]
    started = time.perf_counter()
    model.upsert(changed)
    updated = time.perf_counter() - started
    print(f"\n100,000 jobs loaded in {loaded:.2f} s; 1,000 changed in {updated * 1000:.0f} ms")

    assert model.rowCount() == proxy.rowCount() == 100_000
    assert not seen["reset"] and not seen["inserted"] and not seen["layout"]
    touched = {row for first, last in seen["changed"] for row in range(first, last + 1)}
    assert touched == {model.row_of(job.id) for job in changed}
    row = model.row_of(jobs[500].id)
    assert row is not None
    assert model.index(row, Column.STATE).data() == "failed"
    assert model.index(row, Column.EXIT).data() == "3"


def test_unchanged_jobs_emit_nothing_and_new_ones_arrive_in_one_insertion(qapp) -> None:  # type: ignore[no-untyped-def]
    model = JobsModel()
    model.upsert([make_job(i) for i in range(5)])
    seen = recorder(model)
    model.upsert([make_job(2), make_job(3)])
    assert seen == {"changed": [], "inserted": [], "reset": [], "layout": []}
    model.upsert([make_job(7), make_job(4, priority=999), make_job(8), make_job(7, priority=1)])
    assert seen["inserted"] == [(5, 6)]
    assert seen["changed"] == [(4, 4)]
    assert model.job(5).priority == 1  # a later copy of the same job in one batch wins


def test_filters_by_state_queue_owner_and_text(qapp) -> None:  # type: ignore[no-untyped-def]
    model = JobsModel()
    proxy = JobsFilter(model)
    model.upsert(
        [
            make_job(1, state=JobState.running, queue="gpu", owner="alice", argv=["python", "train.py", "--Big"]),
            make_job(2, state=JobState.queued, queue="gpu", owner="bob", argv=["python", "eval.py"]),
            make_job(3, state=JobState.failed, queue="cpu", owner="alice", argv=["make", "test"]),
            make_job(4, state=JobState.running, queue="cpu", owner="carol", kind=JobKind.task, argv=None, task="index"),
        ]
    )
    ids = lambda: sorted(shown(proxy, Column.ID))  # noqa: E731

    proxy.set_states({JobState.running})
    assert ids() == ["j00001", "j00004"]
    proxy.set_states({JobState.running, JobState.failed})
    assert ids() == ["j00001", "j00003", "j00004"]
    proxy.set_queue("cpu")
    assert ids() == ["j00003", "j00004"]
    proxy.set_owner("alice")
    assert ids() == ["j00003"]
    proxy.set_states(set())
    proxy.set_queue("")
    assert ids() == ["j00001", "j00003"]
    proxy.set_owner("")
    proxy.set_text("  TRAIN.py ")  # command, any case, surrounding blanks ignored
    assert ids() == ["j00001"]
    proxy.set_text("--big")
    assert ids() == ["j00001"]
    proxy.set_text("index")  # a task's name
    assert ids() == ["j00004"]
    proxy.set_text("bob")  # owner
    assert ids() == ["j00002"]
    proxy.set_text("j00003")  # id
    assert ids() == ["j00003"]
    proxy.set_text("")
    assert ids() == ["j00001", "j00002", "j00003", "j00004"]

    model.upsert([make_job(2, state=JobState.running, queue="gpu", owner="bob", argv=["python", "eval.py"])])
    proxy.set_states({JobState.queued})
    assert ids() == []  # the filter follows updates


def test_sort_by_priority_is_numeric_in_both_directions_and_blanks_go_last(qapp) -> None:  # type: ignore[no-untyped-def]
    model = JobsModel()
    proxy = JobsFilter(model)
    priorities = [10, 9, 100, -5, 2]
    model.upsert([make_job(i, priority=p, exit_code=p if p > 5 else None) for i, p in enumerate(priorities)])

    proxy.sort(Column.PRIORITY, Qt.SortOrder.AscendingOrder)
    assert shown(proxy, Column.PRIORITY) == ["-5", "2", "9", "10", "100"]
    proxy.sort(Column.PRIORITY, Qt.SortOrder.DescendingOrder)
    assert shown(proxy, Column.PRIORITY) == ["100", "10", "9", "2", "-5"]
    proxy.sort(Column.EXIT, Qt.SortOrder.AscendingOrder)
    assert shown(proxy, Column.EXIT) == ["9", "10", "100", "", ""]
    proxy.sort(Column.EXIT, Qt.SortOrder.DescendingOrder)
    assert shown(proxy, Column.EXIT) == ["100", "10", "9", "", ""]
    proxy.sort(-1)
    assert shown(proxy, Column.PRIORITY) == ["2", "-5", "100", "9", "10"]  # back to arrival order, newest first


def test_sorted_table_puts_changed_and_new_jobs_in_place_and_keeps_selection(qtbot) -> None:  # type: ignore[no-untyped-def]
    model = JobsModel()
    proxy = JobsFilter(model)
    model.upsert([make_job(i, priority=i * 10) for i in range(5)])  # priorities 0..40
    proxy.sort(Column.PRIORITY, Qt.SortOrder.AscendingOrder)
    picked = QPersistentModelIndex(proxy.index(proxy.row_of("j00001"), 0))  # as a selection holds it

    model.upsert([make_job(1, priority=45), make_job(9, priority=15)])
    qtbot.waitUntil(lambda: shown(proxy, Column.PRIORITY) == ["0", "15", "20", "30", "40", "45"])
    assert shown(proxy, Column.ID) == ["j00000", "j00009", "j00002", "j00003", "j00004", "j00001"]
    assert picked.isValid() and proxy.job(picked.row()).id == "j00001"


def test_stuck_running_jobs_are_highlighted(qapp) -> None:  # type: ignore[no-untyped-def]
    now = [10_000.0]
    model = JobsModel(clock=lambda: now[0])
    model.upsert(
        [
            make_job(1, queue="gpu", state=JobState.running, started_at=9_900.0),  # 100 s
            make_job(2, queue="gpu", state=JobState.running, started_at=9_970.0),  # 30 s
            make_job(3, queue="gpu", state=JobState.queued),
            make_job(4, queue="cpu", state=JobState.running, started_at=1_000.0),  # no threshold on cpu
        ]
    )

    def stuck() -> list[str]:
        return [
            model.job(r).id for r in range(model.rowCount()) if model.index(r, Column.ID).data(BACKGROUND) == STUCK_BRUSH
        ]

    assert stuck() == []
    model.set_stuck_after({"gpu": 60.0, "cpu": None})
    assert stuck() == ["j00001"]
    row = model.row_of("j00001")
    assert row is not None and model.index(row, Column.TIME).data() == "1m 40s"
    now[0] = 10_040.0  # the second job crosses 60 s without any new data
    assert stuck() == ["j00001", "j00002"]

    styled: list[tuple[int, int, list[int]]] = []
    model.dataChanged.connect(lambda a, b, roles: styled.append((a.row(), b.row(), list(roles))))
    lease = LeaseInfo(id="l4", queue="cpu", fence=1, granted_at=1_000.0, job_id="j00004", stuck=True)
    queues = _queue_stats({"gpu": 60.0, "cpu": None})
    model.apply_snapshot(Snapshot(seq=1, at=now[0], queues=queues, leases=[lease]))
    assert stuck() == ["j00001", "j00002", "j00004"]  # the service says so
    assert styled == [(3, 3, [BACKGROUND])]  # only the row that changed, and only its colour


def _queue_stats(stuck_after: dict[str, float | None]) -> list[QueueStats]:
    return [
        QueueStats(
            config=QueueConfig(name=name, stuck_after_s=limit), in_use=0, waiting=0, owners=0, marks=Marks(), totals=Totals()
        )
        for name, limit in stuck_after.items()
    ]


def test_clear_forgets_every_job(qapp) -> None:  # type: ignore[no-untyped-def]
    model = JobsModel()
    proxy = JobsFilter(model)
    model.upsert([make_job(i) for i in range(3)])
    model.clear()
    assert model.rowCount() == proxy.rowCount() == 0
    assert model.row_of("j00001") is None
    model.upsert([make_job(1)])
    assert model.row_of("j00001") == 0


def test_pruned_jobs_leave_in_runs_and_the_rest_stay_findable(qapp) -> None:  # type: ignore[no-untyped-def]
    model = JobsModel()
    proxy = JobsFilter(model)
    model.upsert([make_job(i) for i in range(10)])
    removed: list[tuple[int, int]] = []
    model.rowsRemoved.connect(lambda _parent, first, last: removed.append((first, last)))
    model.remove(["j00002", "j00003", "j00004", "j00007", "not-known"])
    assert removed == [(7, 7), (2, 4)]  # last run first, so the earlier rows keep their numbers meanwhile
    assert [model.job(row).id for row in range(model.rowCount())] == [f"j{i:05x}" for i in (0, 1, 5, 6, 8, 9)]
    assert proxy.rowCount() == 6
    assert model.row_of("j00008") == 4 and model.row_of("j00003") is None
    model.upsert([make_job(3, state=JobState.succeeded)])  # known again only if the server sends it again
    assert model.row_of("j00003") == 6
