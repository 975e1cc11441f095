"""Every operator action end to end: the real main window in local mode, its embedded service over HTTP.

The window starts its local service (SQLite in a temp data dir, a token file 0600), connects to it like to
any server, and each action is done through the widgets an operator uses; the service's own state is checked.
Only confirmation dialogs are answered by the test (monkeypatched), as a person would answer them.
"""

from __future__ import annotations

import asyncio
import stat
import sys

import httpx
import psutil
import pytest
from desktop_harness import Confirmations, QtLoop
from PySide6.QtWidgets import QTableView

from desktop.local import LOCAL_NAME
from desktop.models.queues import LIMIT_COLUMN
from desktop.page import ConnectionPage
from desktop.views.jobs import JobsView
from desktop.views.submit_dialog import SubmitDialog
from desktop.window import MainWindow
from embedded_service.errors import SlotCancelled
from embedded_service.localmode import local_endpoint_path
from embedded_service.model import Job, JobState


def select_source_row(table: QTableView, source_row: int) -> None:
    proxy = table.model()
    source = proxy.sourceModel()  # type: ignore[attr-defined]
    table.selectRow(proxy.mapFromSource(source.index(source_row, 0)).row())  # type: ignore[attr-defined]


def all_jobs(view: JobsView) -> list[Job]:
    return [view.model.job(row) for row in range(view.model.rowCount())]


def local_page(win: MainWindow) -> ConnectionPage:
    return win.pages[LOCAL_NAME]


def test_local_mode_leaves_a_private_token_file(window: MainWindow) -> None:
    path = local_endpoint_path()
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_page(window).conn.spec.url in path.read_text()


def test_limit_pause_and_resume_from_the_queues_table(window: MainWindow, qloop: QtLoop, answers: Confirmations) -> None:
    page = local_page(window)
    service = window.local.server.service  # type: ignore[union-attr]
    row = page.queues.model.names().index("default")
    page.queues.model.setData(page.queues.model.index(row, LIMIT_COLUMN), 3)
    qloop.until(lambda: service.queue_config("default").limit == 3, what="the service's limit raised to 3")
    qloop.until(lambda: page.queues.model.data(page.queues.model.index(row, LIMIT_COLUMN)) == "3 ✎", what="3 ✎")

    page.queues.select_queue("default")
    page.queues.pause_button.click()
    qloop.until(lambda: service.queue_config("default").paused, what="paused in the service")
    qloop.until(lambda: page.queues.resume_button.isEnabled(), what="resume offered")
    page.queues.resume_button.click()
    qloop.until(lambda: not service.queue_config("default").paused, what="resumed in the service")
    qloop.until(lambda: page.audit.model.rowCount() >= 3, what="the three actions in the audit view")


def test_submit_follow_log_and_cancel_a_running_command(window: MainWindow, qloop: QtLoop, answers: Confirmations) -> None:
    page = local_page(window)
    jobs = page.jobs
    jobs.submit_button.click()
    dialog = jobs.findChild(SubmitDialog)
    assert dialog is not None and dialog.isVisible()
    script = "import time; print('started', flush=True); time.sleep(600)"
    dialog.argv.setText(f"{sys.executable} -c \"{script}\"")
    dialog.accept()
    assert dialog.error_text() == "", dialog.error_text()
    qloop.until(lambda: any(j.state is JobState.running and j.pid for j in all_jobs(jobs)), what="job running with its pid")
    job = next(j for j in all_jobs(jobs) if j.state is JobState.running)
    process = psutil.Process(job.pid)

    select_source_row(jobs.table, jobs.model.row_of(job.id))  # type: ignore[arg-type]
    qloop.until(lambda: "started" in jobs.log.toPlainText(), what="the log tail followed live")

    answers.default = False
    jobs.cancel_button.click()
    qloop.run(asyncio.sleep(0.5))
    assert process.is_running() and process.status() != psutil.STATUS_ZOMBIE, "'no' leaves the job alone"
    answers.default = True
    jobs.cancel_button.click()
    qloop.until(lambda: jobs.selected_job() and jobs.selected_job().state is JobState.cancelled, what="cancelled")
    qloop.until(lambda: not process.is_running() or process.status() == psutil.STATUS_ZOMBIE, what="process ended")
    assert answers.asked[-1][0].lower().startswith("cancel")


def test_force_release_a_holder_and_cancel_a_waiter(window: MainWindow, qloop: QtLoop, answers: Confirmations) -> None:
    page = local_page(window)
    server = window.local.server  # type: ignore[union-attr]
    service = server.service
    server.call(service.set_limit("default", 1))
    holder = server.call(service.acquire("default", owner="stuck-client"))
    waiting = asyncio.run_coroutine_threadsafe(service.acquire("default", owner="patient"), server.loop)
    qloop.until(lambda: page.work.leases.row_of(holder.id) is not None, what="the holder listed")
    qloop.until(lambda: page.work.waiters.rowCount() == 1, what="the waiter listed")

    select_source_row(page.work.waiters_table, 0)
    page.work.cancel_button.click()
    qloop.until(waiting.done, what="the waiter's acquire to end")
    with pytest.raises(SlotCancelled):
        waiting.result()

    select_source_row(page.work.leases_table, page.work.leases.row_of(holder.id))  # type: ignore[arg-type]
    page.work.revoke_button.click()
    qloop.until(lambda: service.snapshot().queues[0].in_use == 0 or not service.snapshot().leases, what="lease revoked")
    assert not any(lease.id == holder.id for lease in service.snapshot().leases)


def test_closing_with_running_jobs_asks_first(window: MainWindow, qloop: QtLoop, answers: Confirmations) -> None:
    server = window.local.server  # type: ignore[union-attr]
    server.call(server.service.submit_command([sys.executable, "-c", "import time; time.sleep(600)"]))
    page = local_page(window)
    qloop.until(lambda: window.running_local_jobs() == 1, what="a running job seen")
    answers.default = False
    window.close()
    qloop.run(asyncio.sleep(0.3))
    assert window.isVisible() and "Quit with jobs running?" in [title for title, _ in answers.asked]
    assert page.conn.state.value == "live"
    answers.default = True
    window.close()
    qloop.run(window._run_task, 60)  # type: ignore[attr-defined]
    assert not window.isVisible()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{page.conn.spec.url}/v1/health", timeout=2)  # the local service stopped with the window
