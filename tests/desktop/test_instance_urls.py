"""A cluster's instance URLs: the order they are tried, those a deployment reports, and what is saved."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from desktop.connection import ConnectionSpec
from desktop.instance_urls import InstanceUrls, reported_urls
from desktop.settings import AppSettings
from embedded_service.model import InstanceInfo, Snapshot


def test_urls_are_tried_in_order_each_once_and_wrap() -> None:
    urls = InstanceUrls("http://127.0.0.1:1/", ["http://127.0.0.1:2", "http://127.0.0.1:1", " http://127.0.0.1:2/ "])
    assert urls.all == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    assert [urls.current, urls.advance(), urls.advance()] == [
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "http://127.0.0.1:1",
    ]


def test_learnt_urls_follow_the_reports_and_the_one_in_use_stays_until_it_fails() -> None:
    urls = InstanceUrls("http://127.0.0.1:1")
    assert urls.learn(["http://127.0.0.1:1", "http://127.0.0.1:3"]) is True
    assert urls.all == ("http://127.0.0.1:1", "http://127.0.0.1:3") and urls.learnt == ("http://127.0.0.1:3",)
    assert urls.learn(["http://127.0.0.1:3"]) is False
    urls.advance()
    assert urls.learn(["http://127.0.0.1:4"]) is True
    assert urls.current == "http://127.0.0.1:3", "the instance in use is not dropped while it answers"
    assert urls.all == ("http://127.0.0.1:1", "http://127.0.0.1:4", "http://127.0.0.1:3")


def test_reported_urls_put_live_instances_first_and_refuse_plain_http_to_other_machines() -> None:
    def inst(n: int, url: str | None, stale: bool = False) -> InstanceInfo:
        return InstanceInfo(id=f"h:{n}:x", host="h", stale=stale, url=url)

    snap = Snapshot(
        seq=1,
        at=0.0,
        queues=[],
        instances=[
            inst(1, "http://127.0.0.1:7001", stale=True),
            inst(2, "http://gpu-9.example.org:7002"),  # the token would cross the network in clear
            inst(3, "https://gpu-2.example.org:7003/"),
            inst(4, None),
        ],
    )
    assert reported_urls(snap) == ("https://gpu-2.example.org:7003", "http://127.0.0.1:7001")


def test_a_clusters_listed_and_learnt_urls_are_saved_with_the_server(tmp_path: Path) -> None:
    path = str(tmp_path / "settings.ini")
    spec = ConnectionSpec(
        "deploy", "https://a.example.org", extra_urls=("https://b.example.org",), learnt_urls=("https://c.example.org",)
    )
    AppSettings(QSettings(path, QSettings.Format.IniFormat)).save_remote_connections([spec])
    (again,) = AppSettings(QSettings(path, QSettings.Format.IniFormat)).remote_connections()
    assert again == spec
    assert again.instance_urls().all == ("https://a.example.org", "https://b.example.org", "https://c.example.org")


def test_the_server_dialog_takes_other_instance_urls_and_checks_each(qtbot) -> None:  # type: ignore[no-untyped-def]
    from desktop.views.connect_dialog import ConnectDialog

    dialog = ConnectDialog(set())
    qtbot.addWidget(dialog)
    dialog.name.setText("deploy")
    dialog.url.setText("http://127.0.0.1:7001")
    dialog.extra_urls.setText("http://127.0.0.1:7002, http://gpu-9.example.org:7003")
    assert (dialog.problem() or "").startswith("Other instance http://gpu-9.example.org:7003: use https://")
    dialog.extra_urls.setText("http://127.0.0.1:7002 http://127.0.0.1:7001/ https://gpu-3.example.org")
    assert dialog.problem() is None
    assert dialog.spec().extra_urls == ("http://127.0.0.1:7002", "https://gpu-3.example.org")

    editing = ConnectDialog(set(), edit=dialog.spec())
    qtbot.addWidget(editing)
    assert editing.extra_urls.text() == "http://127.0.0.1:7002 https://gpu-3.example.org"
