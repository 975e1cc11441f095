"""One logical connection for a cluster: when the instance in use dies, the connection moves to another of
its URLs, resumes there and keeps the same page (real `slotdeck serve` processes on a private Redis)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from cluster_serves import free_port, start_serves
from desktop_harness import QtLoop, start_server
from keyring.backends import fail
from PySide6.QtCore import QSettings

from desktop.connection import Connection, ConnectionSpec, LinkState
from desktop.credentials import TokenVault
from desktop.settings import AppSettings
from desktop.window import MainWindow


def limit_of(conn: Connection, queue: str = "default") -> int | None:
    snap = conn.last_snapshot
    return next((q.config.limit for q in snap.queues if q.config.name == queue), None) if snap else None


def test_the_dashboard_fails_over_to_another_instance_and_keeps_its_page(
    qloop: QtLoop, private_redis, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    store = private_redis.url("d" + uuid.uuid4().hex[:8])
    a, b = start_serves(store, tmp_path, 2)
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings, TokenVault(fail.Keyring()), None)
    try:
        window.show()
        page = window.add_connection(ConnectionSpec("deploy", a.url, extra_urls=(b.url,)), None)
        conn = page.conn
        moves: list[str] = []
        conn.instance_changed.connect(moves.append)
        qloop.until(lambda: conn.state is LinkState.live and conn.last_snapshot, timeout=60, what="live through A")
        qloop.until(lambda: len(conn.last_snapshot.instances) == 2, timeout=60, what="both instances listed")  # type: ignore[union-attr]
        assert conn.current_url == a.url and a.url in page.url.text()
        page.show_tab(page.tabs.count() - 1)
        qloop.until(lambda: page.cluster.instances_model.rowCount() == 2, what="the Cluster page's instances")
        history_before = page.overview
        window.fleet.model.refresh()
        assert window.fleet.model.index(0, 0).data() == "deploy · cluster: 2 instances"

        a.kill9()
        # one wait, so that the loop is not stopped while the connection to B is being made
        qloop.until(
            lambda: conn.current_url == b.url and conn.state is LinkState.live and not conn.stale,
            timeout=60,
            what="live again, through instance B",
        )
        httpx.patch(f"{b.url}/v1/queues/default", json={"limit": 7}, timeout=10).raise_for_status()
        qloop.until(lambda: limit_of(conn) == 7, timeout=30, what="a limit set through B, live on the dashboard")
        qloop.until(lambda: page.queues.model.rowCount() and "7" in _row_texts(page), what="the queues table shows it")

        assert moves == [b.url]
        assert b.url in page.url.text() and "instance 2 of 2" in page.url.text()
        assert window.fleet.model.rowCount() == 1 and list(window.pages) == ["deploy"]
        assert window.pages["deploy"] is page and page.overview is history_before
        qloop.until(
            lambda: any(i.stale for i in conn.last_snapshot.instances) or len(conn.last_snapshot.instances) == 1,  # type: ignore[union-attr]
            timeout=60,
            what="A marked stale (or gone) in the cluster's own view",
        )
    finally:
        for each in list(window.pages.values()):
            qloop.run(each.conn.close())
        window.deleteLater()
        a.stop()
        b.stop()


def test_a_primary_url_that_does_not_answer_is_passed_over_for_the_next(qloop: QtLoop) -> None:
    server = start_server(auth=False)
    dead = f"http://127.0.0.1:{free_port()}"
    conn = Connection(ConnectionSpec("two", dead, extra_urls=(server.url,)), None, delays=lambda attempt: 0.2)
    try:
        conn.start()
        qloop.until(lambda: conn.state is LinkState.live, timeout=30, what="live through the second URL")
        assert conn.current_url == server.url
        assert f"via {server.url}" in conn.detail
    finally:
        qloop.run(conn.close())
        server.stop()


def _row_texts(page) -> str:  # type: ignore[no-untyped-def]
    model = page.queues.model
    return " ".join(
        str(model.index(row, col).data()) for row in range(model.rowCount()) for col in range(model.columnCount())
    )


def test_an_instance_that_refuses_the_token_is_passed_over_and_only_all_refusing_is_unauthorized(qloop: QtLoop) -> None:
    mine, other = start_server(), start_server()  # each with its own tokens
    conn = Connection(ConnectionSpec("two", other.url, extra_urls=(mine.url,)), mine.token, delays=lambda a: 0.2)
    nobody = Connection(ConnectionSpec("none", other.url, extra_urls=(mine.url,)), "sdk_unknown", delays=lambda a: 0.2)
    try:
        conn.start()
        nobody.start()
        qloop.until(lambda: conn.state is LinkState.live, timeout=30, what="live on the instance that knows the token")
        assert conn.current_url == mine.url
        qloop.until(lambda: nobody.state is LinkState.unauthorized, timeout=30, what="refused by every instance")
        assert "refused the token" in nobody.detail
    finally:
        qloop.run(conn.close())
        qloop.run(nobody.close())
        mine.stop()
        other.stop()
