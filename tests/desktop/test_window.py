"""The main window around the pages: the fleet of servers, one in focus at full width, removing one, the theme,
the add dialog, the window kept within the screen."""

from __future__ import annotations

from desktop_harness import Confirmations, QtLoop, start_server
from PySide6.QtWidgets import QApplication

from desktop.connection import ConnectionSpec, LinkState
from desktop.local import LOCAL_NAME
from desktop.views.connect_dialog import ConnectDialog
from desktop.window import MainWindow


def test_the_fleet_lists_every_server_and_shows_the_chosen_one_at_full_width(
    window: MainWindow, server, qloop: QtLoop, answers: Confirmations  # type: ignore[no-untyped-def]
) -> None:
    window.vault.put(server.url, server.token)
    window.add_connection(ConnectionSpec("gpu-box", server.url), server.token)
    window._save_remotes()
    qloop.until(lambda: window.pages["gpu-box"].conn.state is LinkState.live, what="remote live")
    local, remote = window.pages[LOCAL_NAME], window.pages["gpu-box"]
    fleet = window.fleet.model
    qloop.until(lambda: fleet.index(1, 1).data().startswith("live"), what="state in the fleet")
    assert [fleet.index(r, 0).data() for r in range(fleet.rowCount())] == [LOCAL_NAME, "gpu-box"]
    assert fleet.index(1, 3).data() == "0 / 1 in 1 queue" and fleet.index(1, 4).data() == "0"
    assert local.isVisible() and not remote.isVisible(), "one server in focus"
    window.fleet.table.selectRow(1)
    assert remote.isVisible() and not local.isVisible()
    assert remote.width() >= window.centralWidget().width() - 20, "the chosen server gets the full width"
    assert window.settings.remote_connections() == [ConnectionSpec("gpu-box", server.url)]

    window.fleet.table.selectRow(0)
    window._remove_selected()
    assert LOCAL_NAME in window.pages, "the local service is not removable"
    window.fleet.table.selectRow(1)
    answers.default = False
    window._remove_selected()
    assert "gpu-box" in window.pages
    answers.default = True
    window._remove_selected()
    assert "gpu-box" not in window.pages and fleet.rowCount() == 1
    assert local.isVisible() and window.fleet.chosen() == LOCAL_NAME
    assert window.settings.remote_connections() == []
    assert window.vault.get(server.url) is None, "its token is forgotten with it"
    qloop.until(lambda: remote.conn.state is LinkState.closed, what="the removed connection closed")


def test_the_window_never_grows_past_the_screen_and_restores_within_it(  # type: ignore[no-untyped-def]
    window: MainWindow, server, qloop: QtLoop
) -> None:
    area = window.screen().availableGeometry()
    for i in range(3):
        window.add_connection(ConnectionSpec(f"box{i}", server.url, remember=False), server.token)
    qloop.until(lambda: all(p.conn.state is LinkState.live for p in window.pages.values()), what="all live")
    for i in range(4):
        window.fleet.table.selectRow(i)
        window._show_tab(i)
    qloop.until(
        lambda: window.frameGeometry().width() <= area.width() and window.frameGeometry().height() <= area.height(),
        what=f"the window within the screen ({window.frameGeometry()} in {area})",
    )
    window.resize(area.width() + 900, area.height() + 600)
    window.move(area.right() + 400, area.bottom() + 300)
    window.fit_to_screen()
    frame = window.frameGeometry()
    assert frame.width() <= area.width() and frame.height() <= area.height()
    assert area.contains(frame.topLeft()) and frame.right() <= area.right() + 1 and frame.bottom() <= area.bottom() + 1


def test_view_menu_labels_have_no_stray_mnemonic(window: MainWindow) -> None:
    texts = [a.text() for a in window.menus["&View"].actions()]
    assert "Waiting && holding" in texts  # shown as "Waiting & holding"; "Waiting &holding" underlined a space


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
    window.show_server("flaky")
    qloop.until(lambda: page.conn.state is LinkState.live and page.queues.model.rowCount() == 1, what="live")
    page.queues.select_queue("default")
    assert page.queues.pause_button.isEnabled() and page.property("stale") is False
    gone.stop()
    qloop.until(lambda: page.property("stale") is True, timeout=20, what="the page marked stale")
    assert not page.queues.pause_button.isEnabled(), "no actions on figures that are not live"
    assert not page.jobs.submit_button.isEnabled()
    assert page.overview.stale_label.isVisible()
    assert window.fleet.model.index(1, 1).data().startswith("reconnecting")


def test_a_saved_servers_token_can_be_edited_in_place(  # type: ignore[no-untyped-def]
    window: MainWindow, server, qloop: QtLoop, monkeypatch
) -> None:
    window.add_connection(ConnectionSpec("box", server.url), "sdk_stale-token")
    window.show_server("box")
    qloop.until(lambda: window.pages["box"].conn.state is LinkState.unauthorized, what="the old token refused")

    def enter_new_token(dialog: ConnectDialog) -> int:
        assert dialog.name.text() == "box" and dialog.url.text() == server.url
        dialog.token.setText(server.token)
        return 1

    monkeypatch.setattr(ConnectDialog, "exec", enter_new_token)
    window._edit_token()
    qloop.until(lambda: window.pages["box"].conn.state is LinkState.live, what="live with the new token")
    assert window.vault.get(server.url) == server.token
    assert [s.name for s in window.settings.remote_connections()] == ["box"]
    assert window.fleet.chosen() == "box"
