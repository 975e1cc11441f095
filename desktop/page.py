"""`ConnectionPage`: everything the dashboard shows of one server, wired to its `Connection`.

The page only connects signals: the connection's data signals feed the views,
the views' operator signals call the connection's actions. No I/O here.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QScrollArea, QTableView, QTabWidget, QVBoxLayout, QWidget

from embedded_service.model import Snapshot

from .connection import Connection, LinkState
from .views.audit import AuditView
from .views.cluster import ClusterView
from .views.devices import DevicesView
from .views.jobs import JobsView
from .views.overview import OverviewView
from .views.queues import QueuesView
from .views.work import WorkView

TABS = ("Overview", "Queues", "Waiting && holding", "Jobs", "Devices", "Audit", "Cluster")


def _scrolling(view: QWidget) -> QScrollArea:
    """The view in a scroll area that fills it: a narrow window scrolls the view rather than growing past
    the screen or cutting it off."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setWidget(view)
    return area


class ConnectionPage(QWidget):
    def __init__(self, conn: Connection, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.conn = conn
        self.active = True
        self.title = QLabel(conn.name)
        self.title.setObjectName("connectionTitle")
        self.link = QLabel("connecting")
        self.link.setObjectName("linkState")
        self.link.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.age = QLabel("")
        self.role = QLabel("")
        self.role.setObjectName("tokenRole")
        self.url = QLabel(conn.current_url)
        self.url.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addWidget(self.url)
        header.addStretch(1)
        header.addWidget(self.role)
        header.addWidget(self.link)
        header.addWidget(self.age)

        self.overview = OverviewView()
        self.queues = QueuesView()
        self.work = WorkView()
        self.jobs = JobsView()
        self.devices = DevicesView()
        self.audit = AuditView()
        self.cluster = ClusterView()
        self.tabs = QTabWidget()
        views = (self.overview, self.queues, self.work, self.jobs, self.devices, self.audit, self.cluster)
        for view, label in zip(views, TABS, strict=True):
            self.tabs.addTab(view if view is self.overview else _scrolling(view), label)

        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.tabs)
        self._wire()
        self._show_state(conn.state.value, conn.detail)

    def _wire(self) -> None:
        c = self.conn
        c.snapshot_received.connect(self._on_snapshot)
        c.history_received.connect(self.overview.backfill)
        c.jobs_received.connect(self.jobs.apply_jobs)
        c.jobs_pruned.connect(self.jobs.model.remove)
        c.audit_received.connect(self.audit.add_entries)
        c.log_page.connect(self.jobs.show_log_page)
        c.log_lines.connect(self.jobs.append_log)
        c.state_changed.connect(self._show_state)
        c.stale_changed.connect(self._show_stale)
        c.role_changed.connect(self._show_role)
        c.job_created.connect(lambda job: self.jobs.select_job(job.id))
        c.instance_changed.connect(self._show_instance)
        c.urls_learnt.connect(lambda _urls: self._show_instance(c.current_url))
        self._show_instance(c.current_url)

        self.queues.limit_requested.connect(c.set_limit)
        self.queues.pause_requested.connect(c.pause)
        self.queues.resume_requested.connect(c.resume)
        self.queues.reset_marks_requested.connect(c.reset_marks)
        self.queues.create_requested.connect(c.create_queue)
        self.queues.update_requested.connect(c.update_queue)
        self.queues.reset_fields_requested.connect(c.reset_fields)
        self.queues.delete_requested.connect(c.delete_queue)
        c.queue_details.connect(self.queues.apply_details)
        c.audit_received.connect(self._on_audit)
        self.work.cancel_waiter_requested.connect(c.cancel_waiter)
        self.work.revoke_requested.connect(c.revoke)
        self.jobs.cancel_requested.connect(c.cancel_job)
        self.jobs.submit_requested.connect(c.submit_command)
        self.jobs.log_wanted.connect(c.follow_log)
        self.jobs.log_earlier_wanted.connect(c.load_earlier_log)
        self.jobs.retry_requested.connect(c.retry_job)

    def set_active(self, active: bool) -> None:
        """In focus (True) or one of many watched in the background (False): in the background only the
        graphs' points are recorded (and alerts and the fleet row follow the connection); the tables and
        plots catch up with the latest snapshot when the page comes back into focus."""
        if active == self.active:
            return
        self.active = active
        self.conn.background = not active
        self.overview.set_active(active)
        if active and self.conn.last_snapshot is not None:
            self._apply_to_views(self.conn.last_snapshot)

    def _on_snapshot(self, snap: Snapshot) -> None:
        self.overview.apply_snapshot(snap)
        if self.active:
            self._apply_to_views(snap)

    def _apply_to_views(self, snap: Snapshot) -> None:
        self.queues.apply_snapshot(snap)
        self.work.apply_snapshot(snap)
        self.devices.apply_snapshot(snap)
        self.jobs.apply_snapshot(snap)
        self.cluster.apply_snapshot(snap)

    def _show_instance(self, url: str) -> None:
        """The instance URL in use, in the header (a cluster connection says which of how many)."""
        urls = self.conn.urls.all
        self.url.setText(url if len(urls) < 2 else f"{url}  (instance {urls.index(url) + 1} of {len(urls)} URLs)")
        self.url.setToolTip("Instance URLs, tried in this order:\n" + "\n".join(urls) if len(urls) > 1 else "")
        self.cluster.set_current_url(url, frozenset(self.conn.not_answering))

    def _show_state(self, state: str, detail: str) -> None:
        self.link.setText(f"● {state}")
        self.link.setToolTip(detail)
        self.link.setProperty("state", state)
        self.link.style().unpolish(self.link)
        self.link.style().polish(self.link)
        if state == LinkState.unauthorized.value:
            self.overview.show_problem(
                f"The server refused this connection's token.\n\n{detail}\n\n"
                "Edit the server's token (File > Edit server token…) or ask for a new one."
            )
        elif state == LinkState.failed.value:
            self.overview.show_problem(f"Cannot connect: {detail}")
        else:
            self.overview.show_problem("")
        self._update_actions()

    def _on_audit(self, entries: list) -> None:
        if any(str(e.action).startswith("queue") for e in entries):
            self.conn.refresh_queue_details()  # who set what: the overrides follow queue changes

    def _show_role(self, role: str) -> None:
        self.conn.refresh_queue_details()
        name = self.conn.token_name
        self.role.setText(f"role: {role}" if role else "")
        self.role.setToolTip(f"This connection's token is {name!r}, role {role}." if role else "")
        for view in (self.queues, self.jobs, self.work):
            view.set_role(role)

    def _show_stale(self, stale: bool) -> None:
        self.setProperty("stale", stale)
        for table in self.findChildren(QTableView):  # the theme greys tables under a stale page: re-style them
            table.style().unpolish(table)
            table.style().polish(table)
            table.viewport().update()
        self.overview.set_stale(stale)
        self._update_actions()

    def _update_actions(self) -> None:
        """Operator actions only on live figures: not while stale, reconnecting or refused."""
        read_only = self.conn.stale or self.conn.state is not LinkState.live
        for view in (self.queues, self.jobs, self.work):
            view.set_read_only(read_only)

    def refresh_age(self) -> None:
        self.age.setText(self.conn.freshness())

    def show_tab(self, index: int) -> None:
        if 0 <= index < self.tabs.count():
            self.tabs.setCurrentIndex(index)
