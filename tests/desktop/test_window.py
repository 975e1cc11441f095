"""The main window around the pages: several servers side by side, removing one, the theme, the add dialog."""

from __future__ import annotations

from desktop_harness import Confirmations, QtLoop, start_server
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from desktop.connection import ConnectionSpec, LinkState
from desktop.local import LOCAL_NAME
from desktop.views.connect_dialog import ConnectDialog
from desktop.window import MainWindow


def test_a_remote_server_beside_the_local_one_then_removed(
    window: MainWindow, server, qloop: QtLoop, answers: Confirmations  # type: ignore[no-untyped-def]
) -> None:
    window.vault.put(server.url, server.token)
    window.add_connection(ConnectionSpec("gpu-box", server.url), server.token)
    window._save_remotes()
    qloop.until(lambda: window.pages["gpu-box"].conn.state is LinkState.live, what="remote live")
    local, remote = window.pages[LOCAL_NAME], window.pages["gpu-box"]
    assert local.isVisible() and remote.isVisible(), "both servers are shown at once"
    assert local.geometry().right() <= remote.geometry().left() or remote.geometry().right() <= local.geometry().left()
    qloop.until(lambda: window.connections.item(1).text().startswith("gpu-box\nlive"), what="state in the list")
    assert window.settings.remote_connections() == [ConnectionSpec("gpu-box", server.url)]

    window.connections.item(1).setCheckState(Qt.CheckState.Unchecked)
    assert not remote.isVisible() and local.isVisible()

    window.connections.setCurrentRow(0)
    window._remove_selected()
    assert LOCAL_NAME in window.pages, "the local service is not removable"
    window.connections.setCurrentRow(1)
    answers.default = False
    window._remove_selected()
    assert "gpu-box" in window.pages
    answers.default = True
    window._remove_selected()
    assert "gpu-box" not in window.pages and window.connections.count() == 1
    assert window.settings.remote_connections() == []
    assert window.vault.get(server.url) is None, "its token is forgotten with it"
    qloop.until(lambda: remote.conn.state is LinkState.closed, what="the removed connection closed")


def test_theme_toggle_is_applied_and_remembered(window: MainWindow) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    before = window.settings.theme()
    window.toggle_theme()
    after = window.settings.theme()
    assert after != before and after in ("light", "dark")
    assert ("#0d1117" in app.styleSheet()) == (after == "dark")
    window.toggle_theme()
    assert window.settings.theme() == before


def test_connect_dialog_checks_what_it_is_given(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    dialog = ConnectDialog({"Local"}, keyring_problem="No system keyring is available")
    qtbot.addWidget(dialog)
    assert dialog.problem() == "Give the server a name"
    dialog.name.setText("Local")
    assert "exists already" in (dialog.problem() or "")
    dialog.name.setText("gpu-box")
    dialog.url.setText("gpu-box:8765")
    assert "http://" in (dialog.problem() or "")
    dialog.url.setText("https://gpu-box:8765")
    dialog.token.setText("  sdk_abc  ")
    dialog.ca.setText(str(ca_file))
    assert dialog.problem() is None
    assert dialog.spec() == ConnectionSpec("gpu-box", "https://gpu-box:8765", ca_file=str(ca_file))
    assert dialog.token_text() == "sdk_abc"
    assert dialog.token.echoMode() == dialog.token.EchoMode.Password
    dialog.ca.setText("/nonexistent/ca.pem")
    assert "no CA certificate file" in (dialog.problem() or "")
    dialog.ca.setText("")
    dialog.url.setText("http://gpu-box:8765")
    assert "https://" in (dialog.problem() or ""), "a token never crosses the network over plain http"
    dialog.url.setText("http://127.0.0.1:8765")
    assert dialog.problem() is None


def test_an_unreadable_ca_file_is_a_failed_connection_not_a_crash(window: MainWindow, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    page = window.add_connection(ConnectionSpec("tls-box", "https://127.0.0.1:9", ca_file=str(bogus)), "tok")
    assert page.conn.state is LinkState.failed and "cannot set up" in page.conn.detail
    assert not page.queues.pause_button.isEnabled()


def test_same_names_get_a_suffix_and_one_run_connections_are_not_saved(window: MainWindow, server) -> None:  # type: ignore[no-untyped-def]
    window.add_connection(ConnectionSpec("box", server.url), server.token)
    second = window.add_connection(ConnectionSpec("box", server.url, remember=False), server.token)
    assert second.conn.name == "box (2)" and set(window.pages) >= {"box", "box (2)"}
    window._save_remotes()
    assert [spec.name for spec in window.settings.remote_connections()] == ["box"], "local and --connect are not saved"


def test_a_server_that_goes_away_greys_its_page_and_blocks_actions(window: MainWindow, qloop: QtLoop) -> None:
    gone = start_server()
    window.add_connection(ConnectionSpec("flaky", gone.url), gone.token)
    page = window.pages["flaky"]
    qloop.until(lambda: page.conn.state is LinkState.live and page.queues.model.rowCount() == 1, what="live")
    page.queues.select_queue("default")
    assert page.queues.pause_button.isEnabled() and page.property("stale") is False
    gone.stop()
    qloop.until(lambda: page.property("stale") is True, timeout=20, what="the page marked stale")
    assert not page.queues.pause_button.isEnabled(), "no actions on figures that are not live"
    assert not page.jobs.submit_button.isEnabled()
    assert page.overview.stale_label.isVisible()
    assert "reconnecting" in window.connections.item(1).text()
