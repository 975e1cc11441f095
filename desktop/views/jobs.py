"""`JobsView`: the jobs table with filters, a details pane and the selected job's live log.

Nothing here talks to a server: jobs and log text come in through `apply_jobs`,
`show_log` and `append_log`; operator actions leave as signals (`cancel_requested`,
`submit_requested`) and so does the wish to follow a job's log (`log_wanted`,
"" when nothing is selected), so the connection streams one log at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QFontDatabase, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from embedded_service.model import Job, JobKind, JobState, Snapshot

from ..models.formats import format_when
from ..models.jobs import Column, JobsFilter, JobsModel, command_text
from ..models.reasons import queued_reason
from ..roles import Act, gate
from . import confirm
from .keeping_table import KeepingTable
from .submit_dialog import SubmitDialog

LOG_MAX_LINES = 5000
LOG_FIRST_LINES = 500  # the connection's first tail (connection.LOG_TAIL_LINES)
LOG_MAX_TAIL = 100_000  # the most lines the server sends as a tail
FILTER_DELAY_MS = 250  # typing pauses this long before 100,000 rows are filtered again
REPAINT_MS = 1000  # ages, runtimes and the time-based stuck highlight move on without new data

_DETAILS = (
    "Id",
    "State",
    "Queue",
    "Owner",
    "Command",
    "Priority",
    "Attempts",
    "Created",
    "Started",
    "Finished",
    "Exit code",
    "Error",
    "GPUs",
    "Process",
    "Why waiting",
)


def job_details(job: Job) -> tuple[str, ...]:
    """The details pane's values for a job, in the order of `_DETAILS`."""
    gpus = f"{job.gpus} × {job.gpu_mem_mib} MiB" if job.gpu_mem_mib else str(job.gpus)
    if job.devices:
        gpus += f" on {', '.join(map(str, job.devices))}"
    if job.gpu_mem_used_mib is not None:
        gpus += f", {job.gpu_mem_used_mib} MiB used"
    process = [f"pid {job.pid}"] if job.pid is not None else []
    if job.cpu_pct is not None:
        process.append(f"CPU {job.cpu_pct:.0f}%")
    if job.rss_mib is not None:
        process.append(f"RSS {job.rss_mib:.0f} MiB")
    return (
        job.id,
        job.state.value,
        job.queue,
        job.owner or "",
        command_text(job),
        str(job.priority),
        f"{job.attempts} of {job.max_attempts}",
        format_when(job.created_at),
        format_when(job.started_at),
        format_when(job.finished_at),
        "" if job.exit_code is None else str(job.exit_code),
        job.error or "",
        gpus,
        ", ".join(process),
    )


class JobsView(QWidget):
    """Jobs of one connection: filter bar, sortable table, details and log tail, cancel and submit."""

    cancel_requested = Signal(str)  # job id
    retry_requested = Signal(str)  # job id: submit a copy of its spec
    log_lines_wanted = Signal(str, int)  # job id, how many of its last lines to show (Load earlier)
    submit_requested = Signal(object)  # CommandSubmit
    log_wanted = Signal(str)  # job id whose log to follow, "" for none

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = JobsModel(parent=self)
        self.filter = JobsFilter(self.model, self)
        self._queues: list[str] = []
        self._selected = ""
        self._read_only = False
        self._role = ""
        self._snap: Snapshot | None = None
        self._log_asked = LOG_FIRST_LINES
        self._log_complete = False
        self._log_lines = 0

        self.states_button = QToolButton()
        self.states_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        states_menu = QMenu(self.states_button)
        self.state_actions: dict[JobState, QAction] = {}
        for state in JobState:
            action = states_menu.addAction(state.value.replace("_", " "))
            action.setCheckable(True)
            action.toggled.connect(self._apply_states)
            self.state_actions[state] = action
        self.states_button.setMenu(states_menu)
        self.states_button.setText("All states")
        self.queue_filter = QComboBox()
        self.queue_filter.addItem("All queues", "")
        self.queue_filter.currentIndexChanged.connect(lambda _: self.filter.set_queue(self.queue_filter.currentData()))
        self.owner_filter = QLineEdit()
        self.owner_filter.setPlaceholderText("Owner (exact)")
        self.owner_filter.setClearButtonEnabled(True)
        self.text_filter = QLineEdit()
        self.text_filter.setPlaceholderText("Search id, owner, queue, command")
        self.text_filter.setClearButtonEnabled(True)
        self._typing = QTimer(self)
        self._typing.setSingleShot(True)
        self._typing.setInterval(FILTER_DELAY_MS)
        self._typing.timeout.connect(self._apply_typed_filters)
        self.owner_filter.textChanged.connect(self._typing.start)
        self.text_filter.textChanged.connect(self._typing.start)
        self.count = QLabel()

        self.table = KeepingTable()
        self.table.setModel(self.filter)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)  # Ctrl/Shift: bulk cancel
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        rows = self.table.verticalHeader()
        rows.setVisible(False)
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # uniform heights: nothing measures 100k rows
        rows.setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)
        header.setSectionsClickable(True)
        header.setSortIndicatorShown(True)
        header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        header.setSortIndicatorClearable(True)  # a third click goes back to arrival order
        # Not setSortingEnabled: QTableView would sort twice per click, and each sort of 100k rows costs.
        header.sortIndicatorChanged.connect(self.filter.sort)
        header.resizeSection(Column.ID, 120)
        header.resizeSection(Column.COMMAND, 260)
        header.resizeSection(Column.TIME, 120)

        self.details: dict[str, QLabel] = {}
        form = QFormLayout()
        for name in _DETAILS:
            label = QLabel()
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
            self.details[name] = label
            form.addRow(name, label)
        details_body = QWidget()
        details_body.setLayout(form)
        details = QScrollArea()
        details.setWidgetResizable(True)
        details.setWidget(details_body)
        details.setMinimumWidth(320)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_MAX_LINES)
        self.log.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setPlaceholderText("Select a job to follow its log.")
        self.log_marker = QLabel()
        self.earlier_button = QPushButton("Load earlier")
        self.earlier_button.setToolTip("Show more of the log, back to its first line")
        self.earlier_button.clicked.connect(self._load_earlier)
        self.log_search = QLineEdit()
        self.log_search.setPlaceholderText("Find in log (Enter: next)")
        self.log_search.setClearButtonEnabled(True)
        self.log_search.setMinimumWidth(220)
        self.log_search.returnPressed.connect(self.find_in_log)
        self.save_log_button = QPushButton("Save log…")
        self.save_log_button.clicked.connect(self._save_log)
        log_bar = QHBoxLayout()
        log_bar.addWidget(self.log_marker, 1)
        log_bar.addWidget(self.earlier_button)
        log_bar.addWidget(self.log_search)
        log_bar.addWidget(self.save_log_button)
        log_box = QWidget()
        log_layout = QVBoxLayout(log_box)
        log_layout.setContentsMargins(0, 0, 0, 0)
        log_layout.addLayout(log_bar)
        log_layout.addWidget(self.log)
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(details)
        lower.addWidget(log_box)
        lower.setStretchFactor(1, 2)
        lower.setSizes([380, 620])
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(lower)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([600, 400])  # the table first: it is what the operator scans

        self.cancel_button = QPushButton("Cancel job")
        self.cancel_button.clicked.connect(self._cancel)
        self.retry_button = QPushButton("Retry")
        self.retry_button.clicked.connect(self._retry)
        self.submit_button = QPushButton("Submit command…")
        self.submit_button.clicked.connect(self._open_submit)

        bar = QHBoxLayout()
        for widget in (self.states_button, self.queue_filter, self.owner_filter, self.text_filter):
            bar.addWidget(widget)
        bar.addWidget(self.count, 1)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.retry_button)
        bar.addWidget(self.submit_button)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.splitter)

        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        # Filtering can emit thousands of row signals at once: count and re-check the selection once after them.
        self._rows_changed = QTimer(self)
        self._rows_changed.setSingleShot(True)
        self._rows_changed.setInterval(0)
        self._rows_changed.timeout.connect(self._on_rows)
        for signal in (self.filter.rowsInserted, self.filter.rowsRemoved, self.filter.modelReset, self.filter.layoutChanged):
            signal.connect(self._rows_changed.start)
        self._repaint = QTimer(self)
        self._repaint.setInterval(REPAINT_MS)
        self._repaint.timeout.connect(self.table.viewport().update)
        self._repaint.start()
        self._on_rows()

    # Data in

    def apply_jobs(self, jobs: list[Job]) -> None:
        """New and changed jobs from the connection."""
        self.model.upsert(jobs)
        if self._selected and any(job.id == self._selected for job in jobs):
            self._show_selected()

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Stuck thresholds and stuck leases for the highlight, and the queue names for the choices."""
        self.model.apply_snapshot(snap)
        self._snap = snap
        job = self.selected_job()
        if job is not None and job.state == JobState.queued:
            self._show_selected()
        names = [q.config.name for q in snap.queues]
        if names != self._queues:
            self.set_queues(names)

    def set_queues(self, names: Sequence[str]) -> None:
        """Queue names offered by the queue filter and the submit dialog."""
        self._queues = list(names)
        current = self.queue_filter.currentData()
        self.queue_filter.blockSignals(True)
        self.queue_filter.clear()
        self.queue_filter.addItem("All queues", "")
        for name in self._queues:
            self.queue_filter.addItem(name, name)
        self.queue_filter.setCurrentIndex(max(0, self.queue_filter.findData(current)))
        self.queue_filter.blockSignals(False)
        self.filter.set_queue(self.queue_filter.currentData())

    def show_log(self, job_id: str, text: str) -> None:
        """Replace the log pane with `text` if `job_id` is still the selected job."""
        if job_id and job_id == self._selected:
            self.log.setPlainText(text)
            self._scroll_log_to_end()
            self._log_lines = 0
            self._mark_log()

    def append_log(self, job_id: str, lines: list[str]) -> None:
        """Append lines to the log pane if `job_id` is still selected; follows the end unless scrolled up."""
        if not lines or not job_id or job_id != self._selected:
            return
        bar = self.log.verticalScrollBar()
        following = bar.value() >= bar.maximum() - 1
        self.log.appendPlainText("\n".join(line.rstrip("\n") for line in lines))
        self._log_lines += len(lines)
        self._mark_log()
        if following:
            self._scroll_log_to_end()

    def set_read_only(self, read_only: bool) -> None:
        """Disable cancel and submit (data too old to act on)."""
        self._read_only = read_only
        self._update_buttons()

    def set_role(self, role: str) -> None:
        """The connection's token role: actions it may not do are disabled with a tooltip saying why."""
        self._role = role
        self._update_buttons()

    def select_job(self, job_id: str) -> None:
        """Select this job (e.g. the one just submitted), clearing filters that hide it."""
        if self.filter.row_of(job_id) is None and self.model.row_of(job_id) is not None:
            for action in self.state_actions.values():
                action.setChecked(False)
            self.queue_filter.setCurrentIndex(0)
            self.owner_filter.clear()
            self.text_filter.clear()
            self._apply_typed_filters()
        row = self.filter.row_of(job_id)  # by the model's index, not a scan of 100,000 rows
        if row is None:
            return
        index = self.filter.index(row, 0)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.table.selectionModel().setCurrentIndex(index, flags)
        self.table.scrollTo(index)

    def find_in_log(self) -> bool:
        """Select the next match of the search text in the log (wrapping to the top); False when none."""
        text = self.log_search.text()
        if not text:
            return False
        if self.log.find(text):
            return True
        self.log.moveCursor(QTextCursor.MoveOperation.Start)
        return self.log.find(text)

    # Queries

    def selected_job(self) -> Job | None:
        row = self.model.row_of(self._selected) if self._selected else None
        return None if row is None else self.model.job(row)

    def selected_jobs(self) -> list[Job]:
        """Every selected job, top to bottom."""
        rows = (self.model.row_of(job_id) for job_id in self.table.selected_ids())
        return [self.model.job(row) for row in rows if row is not None]

    # Internals

    def _apply_states(self) -> None:
        states = [state for state, action in self.state_actions.items() if action.isChecked()]
        self.states_button.setText(", ".join(s.value for s in states) if states else "All states")
        self.filter.set_states(states)

    def _apply_typed_filters(self) -> None:
        self.filter.set_owner(self.owner_filter.text().strip())
        self.filter.set_text(self.text_filter.text())

    def _on_selection(self, _selected: QItemSelection | None = None, _deselected: QItemSelection | None = None) -> None:
        ids = self.table.selected_ids()
        current = self.table.currentIndex()
        current_id = self.filter.job(current.row()).id if current.isValid() else ""
        job_id = current_id if current_id in ids else (ids[0] if ids else "")
        if job_id != self._selected:
            self._selected = job_id
            self.log.clear()
            self._log_asked, self._log_lines, self._log_complete = LOG_FIRST_LINES, 0, False
            self._mark_log()
            self.log_wanted.emit(job_id)
        self._show_selected()

    def _on_rows(self) -> None:
        shown, total = self.filter.rowCount(), self.model.rowCount()
        self.count.setText(f"{total:,} jobs" if shown == total else f"{shown:,} of {total:,} jobs")
        self._on_selection()

    def _show_selected(self) -> None:
        job = self.selected_job()
        values = (*job_details(job), queued_reason(job, self._snap)) if job else ("",) * len(_DETAILS)
        for name, value in zip(_DETAILS, values, strict=True):
            self.details[name].setText(value)
        self._update_buttons()

    def _update_buttons(self) -> None:
        jobs = self.selected_jobs()
        open_jobs = [j for j in jobs if not j.state.finished]
        self.cancel_button.setText(f"Cancel {len(open_jobs)} jobs" if len(open_jobs) > 1 else "Cancel job")
        gate(self.cancel_button, Act.cancel_job, self._role, not self._read_only and bool(open_jobs))
        retryable = len(jobs) == 1 and jobs[0].state.finished and jobs[0].kind == JobKind.command
        gate(self.retry_button, Act.retry_job, self._role, not self._read_only and retryable,
             "Submit a copy of the selected finished command job (same command, queue and resources)")
        gate(self.submit_button, Act.submit, self._role, not self._read_only)

    def _mark_log(self) -> None:
        job_id = self._selected
        if not job_id:
            self.log_marker.setText("")
            self.earlier_button.setEnabled(False)
            return
        self._log_complete = self._log_lines < self._log_asked
        if self._log_lines == 0:
            self.log_marker.setText("No output yet")
        elif self._log_complete:
            self.log_marker.setText(f"Whole log: {self._log_lines:,} lines, from the first")
        else:
            self.log_marker.setText(f"Last {self._log_asked:,} lines and what follows; earlier lines not shown")
        job = self.selected_job()
        if job is not None and job.attempts > 1:  # the server writes no separator between attempts (yet)
            self.log_marker.setText(
                f"{self.log_marker.text()} · {job.attempts} attempts: their output follows one another here"
            )
        self.earlier_button.setEnabled(not self._log_complete and self._log_asked < LOG_MAX_TAIL)

    def _load_earlier(self) -> None:
        if self._selected and not self._log_complete:
            self._log_asked = min(LOG_MAX_TAIL, self._log_asked * 10)
            self.log.setMaximumBlockCount(max(LOG_MAX_LINES, self._log_asked + LOG_MAX_LINES))
            self.log_lines_wanted.emit(self._selected, self._log_asked)

    def _save_log(self) -> None:
        if not self._selected:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save log", f"{self._selected}.log", "Log files (*.log *.txt)")
        if path:
            Path(path).write_text(self.log.toPlainText() + "\n", encoding="utf-8")

    def _scroll_log_to_end(self) -> None:
        bar = self.log.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _cancel(self) -> None:
        jobs = [j for j in self.selected_jobs() if not j.state.finished]
        if len(jobs) > 1:
            listed = "\n".join(f"{j.id} in {j.queue}: {command_text(j)[:60]}" for j in jobs[:10])
            more = f"\n… and {len(jobs) - 10} more" if len(jobs) > 10 else ""
            text = f"Cancel these {len(jobs)} jobs?\n\n{listed}{more}\n\nRunning ones are stopped; queued ones won't start."
            if confirm.confirm(self, f"Cancel {len(jobs)} jobs", text):
                for j in jobs:
                    self.cancel_requested.emit(j.id)
            return
        job = jobs[0] if jobs else None
        if job is None:
            return
        what = "Its process group is stopped." if job.state == JobState.running else "It will not start."
        text = f"Cancel job {job.id} in {job.queue}?\n\n{command_text(job)}\n\n{what}"
        if confirm.confirm(self, "Cancel job", text):
            self.cancel_requested.emit(job.id)

    def _retry(self) -> None:
        jobs = self.selected_jobs()
        if len(jobs) != 1 or not jobs[0].state.finished:
            return
        job = jobs[0]
        text = f"Submit a new job like {job.id} ({job.state.value}) in {job.queue}?\n\n{command_text(job)}"
        if confirm.confirm(self, "Retry job", text):
            self.retry_requested.emit(job.id)

    def _open_submit(self) -> None:
        dialog = SubmitDialog(self._queues, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._submit(dialog))
        dialog.open()

    def _submit(self, dialog: SubmitDialog) -> None:
        command = dialog.command()
        if command is not None and not self._read_only:
            self.submit_requested.emit(command)
