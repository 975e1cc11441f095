"""`JobsView`: the jobs table with filters, a details pane and the selected job's live log.

Nothing here talks to a server: jobs and log text come in through `apply_jobs`,
`show_log_page` and `append_log`; operator actions leave as signals (`cancel_requested`,
`submit_requested`) and so does the wish to follow a job's log (`log_wanted`,
"" when nothing is selected), so the connection streams one log at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QScrollArea,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from embedded_service.model import Job, JobKind, JobLogPage, JobState, Snapshot

from ..models.formats import format_when
from ..models.jobs import Column, JobsFilter, JobsModel, command_text
from ..models.reasons import queued_reason
from ..roles import Act, gate
from . import confirm
from .keeping_table import KeepingTable
from .log_pane import LogPane
from .submit_dialog import SubmitDialog

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
    log_earlier_wanted = Signal(str, int)  # job id, log position the page before the shown lines ends at
    submit_requested = Signal(object)  # CommandSubmit
    log_wanted = Signal(str)  # job id whose log to show from its last page and follow, "" for none

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = JobsModel(parent=self)
        self.filter = JobsFilter(self.model, self)
        self._queues: list[str] = []
        self._selected = ""
        self._read_only = False
        self._role = ""
        self._snap: Snapshot | None = None
        self._log_attempts = 0  # the selected job's attempts when its log was asked for
        self._log_reload_pending = False  # an attempt began before the log's first page came

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
        self.log_pane = LogPane()
        self.log_pane.earlier_wanted.connect(lambda before: self.log_earlier_wanted.emit(self._selected, before))
        self.log_pane.latest_wanted.connect(lambda: self.log_wanted.emit(self._selected))
        self.log = self.log_pane.text
        self.log_marker = self.log_pane.marker
        self.earlier_button = self.log_pane.earlier_button
        self.log_search = self.log_pane.search
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(details)
        lower.addWidget(self.log_pane)
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
        """New and changed jobs from the connection; a new attempt of the selected job reloads its log's end
        (the page says where that attempt began)."""
        self.model.upsert(jobs)
        if self._selected and any(job.id == self._selected for job in jobs):
            self._show_selected()
            job = self.selected_job()
            # a retry began (the first attempt's line needs no new page: the pane knows log position 0 begins it)
            if job is not None and job.attempts > max(1, self._log_attempts):
                if self.log_pane.has_page():
                    self._want_log(job)
                else:  # not while the first page is on its way (a request cut short): once it is shown
                    self._log_reload_pending = True

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

    def show_log_page(self, job_id: str, page: JobLogPage, latest: bool) -> None:
        """A page of the selected job's log: its end (`latest`) or the page before the lines shown."""
        self.log_pane.show_page(job_id, page, latest)
        if latest and self._log_reload_pending and job_id == self._selected:
            self._want_log(self.selected_job())  # an attempt began while this page was read

    def append_log(self, job_id: str, lines: list[str]) -> None:
        """Lines written after the last page, if `job_id` is still selected; follows the end unless scrolled up."""
        self.log_pane.append(job_id, lines)

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
        return self.log_pane.find_next()

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
            self._want_log(self.selected_job())
        self._show_selected()

    def _want_log(self, job: Job | None) -> None:
        self._log_attempts = job.attempts if job is not None else 0
        self._log_reload_pending = False
        self.log_pane.reset(self._selected, job.max_attempts if job is not None else 1)
        self.log_wanted.emit(self._selected)

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
