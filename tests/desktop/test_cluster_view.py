"""The Cluster page, a real widget fed snapshots of a redis-mode deployment: hosts and instances with their
heartbeat ages and stale marks, GPUs grouped by host, cluster totals; a single server is said to be one."""

from __future__ import annotations

from desktop_harness import queue_stats
from PySide6.QtCore import Qt

from desktop.connection import Connection, ConnectionSpec
from desktop.models.cluster import GONE_KEPT_S, STALE_BRUSH
from desktop.views.cluster import SINGLE_SERVER, ClusterView
from desktop.views.fleet import fleet_row
from embedded_service.model import ClusterHost, DeviceInfo, InstanceInfo, Snapshot

AT = 1_800_000_000.0


def gpu(index: int, host: str | None, used: int = 1024) -> DeviceInfo:
    return DeviceInfo(index=index, name="NVIDIA H100", memory_total_mib=81920, memory_used_mib=used, host=host)


def cluster_snapshot(*, with_hosts: bool = True, b_stale: bool = True) -> Snapshot:
    instances = [
        InstanceInfo(id="a:11:x", host="a", pid=11, version="1.2.0", last_heartbeat=AT - 1.5, stale=False,
                     url="http://127.0.0.1:9001"),
        InstanceInfo(id="b:22:y", host="b", pid=22, version="1.2.0", last_heartbeat=AT - 42, stale=b_stale,
                     url="http://127.0.0.1:9002"),
        InstanceInfo(id="a:33:z", host="a", pid=33, version=None, last_heartbeat=AT - 3, stale=False),
    ]  # fmt: skip
    hosts = [
        ClusterHost(host="b", instances=["b:22:y"], last_heartbeat=AT - 42, stale=b_stale, devices=[gpu(0, "b")]),
        ClusterHost(host="a", instances=["a:11:x", "a:33:z"], last_heartbeat=AT - 1.5, stale=False,
                    devices=[gpu(1, "a"), gpu(0, "a", used=2048)]),
    ]  # fmt: skip
    return Snapshot(
        seq=1,
        at=AT,
        queues=[queue_stats("chat", limit=4, in_use=3, waiting=5), queue_stats("train", limit=2, in_use=2, paused=True)],
        devices=[gpu(0, "a", used=2048), gpu(1, "a"), gpu(0, "b")] if not with_hosts else [],
        instances=instances,
        hosts=hosts if with_hosts else [],
    )


def cells(model, column: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [model.index(row, column).data() for row in range(model.rowCount())]


def test_hosts_instances_stale_marks_and_gpus_by_host(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = ClusterView()
    qtbot.addWidget(view)
    view.show()
    view.set_current_url("http://127.0.0.1:9001")
    view.apply_snapshot(cluster_snapshot())

    assert not view.single.isVisible() and view.hosts_table.isVisible() and view.instances_table.isVisible()
    hosts = view.hosts_model
    assert cells(hosts, hosts.HOST) == ["a", "b"]
    assert cells(hosts, hosts.INSTANCES) == ["2", "1"]
    assert cells(hosts, hosts.STALE_INSTANCES) == ["", "1"]
    assert cells(hosts, hosts.GPUS) == ["2", "1"]
    assert cells(hosts, hosts.HEARTBEAT) == ["1.5s ago", "42.0s ago"]
    assert cells(hosts, hosts.STATE) == ["live", "stale"]
    assert hosts.index(1, 0).data(Qt.ItemDataRole.BackgroundRole) == STALE_BRUSH
    assert hosts.index(0, 0).data(Qt.ItemDataRole.BackgroundRole) is None

    inst = view.instances_model
    assert cells(inst, inst.HOST) == ["a", "b", "a"]
    assert cells(inst, inst.PID) == ["11", "22", "33"]
    assert cells(inst, inst.VERSION) == ["1.2.0", "1.2.0", ""]
    assert cells(inst, inst.URL) == ["http://127.0.0.1:9001", "http://127.0.0.1:9002", ""]
    assert cells(inst, inst.HEARTBEAT) == ["1.5s ago", "42.0s ago", "3.0s ago"]
    assert cells(inst, inst.STATE) == ["live · connected", "stale", "live"]
    assert inst.index(1, inst.HOST).data(Qt.ItemDataRole.BackgroundRole) == STALE_BRUSH

    assert view.gpu_groups() == [("a", ["GPU 0", "GPU 1"]), ("b", ["GPU 0"])]
    a_gpus, b_gpus = view.gpus.topLevelItem(0), view.gpus.topLevelItem(1)
    assert a_gpus.text(0) == "a · 2 GPUs" and b_gpus.text(0) == "b · 1 GPU · host stale: its last published figures"
    assert b_gpus.child(0).background(0) == STALE_BRUSH and a_gpus.child(0).background(0) != STALE_BRUSH
    assert view.totals.text() == (
        "2 hosts, 1 stale · 3 instances, 1 stale · 5 / 6 slots in use · 5 waiting in 2 queues (1 paused) · 3 GPUs"
    )


def test_without_the_hosts_field_hosts_come_from_instances_and_gpus_from_their_host_field(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = ClusterView()
    qtbot.addWidget(view)
    view.apply_snapshot(cluster_snapshot(with_hosts=False, b_stale=False))
    assert cells(view.hosts_model, view.hosts_model.HOST) == ["a", "b"]
    assert cells(view.hosts_model, view.hosts_model.HEARTBEAT) == ["1.5s ago", "42.0s ago"]
    assert cells(view.hosts_model, view.hosts_model.STATE) == ["live", "live"]
    assert view.gpu_groups() == [("a", ["GPU 0", "GPU 1"]), ("b", ["GPU 0"])]  # by each device's `host`
    assert view.totals.text().startswith("2 hosts · 3 instances · 5 / 6 slots in use")


def test_a_process_the_deployment_forgets_stays_marked_gone_then_leaves_and_the_selection_with_it(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = ClusterView()
    qtbot.addWidget(view)
    view.show()
    view.apply_snapshot(cluster_snapshot())
    view.instances_table.select_ids(["b:22:y"])
    inst = view.instances_model

    def without_b(at: float) -> Snapshot:
        snap = cluster_snapshot()
        snap.at = at
        snap.instances = [i for i in snap.instances if i.id != "b:22:y"]
        return snap

    view.apply_snapshot(without_b(AT + 1))
    view.apply_snapshot(without_b(AT + 6))
    assert cells(inst, inst.PID) == ["11", "22", "33"]
    assert cells(inst, inst.STATE)[1] == "gone (no longer listed for 5.0s)"
    assert view.instances_table.selected_ids() == ["b:22:y"]
    assert view.totals.text().startswith("2 hosts, 1 stale · 2 instances ·"), "totals count what the deployment lists"

    view.apply_snapshot(without_b(AT + 1 + GONE_KEPT_S))
    assert cells(inst, inst.PID) == ["11", "33"]
    assert view.instances_table.selected_ids() == [], "the chosen row left: nothing is selected"
    view.instances_table.select_ids(["a:33:z"])
    view.apply_snapshot(cluster_snapshot())  # b comes back (appended): the choice stays on a:33:z
    assert view.instances_table.selected_ids() == ["a:33:z"]
    assert cells(inst, inst.STATE)[-1] == "stale", "listed again: no longer gone"


def test_a_single_server_says_so_and_its_fleet_row_is_not_a_cluster(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = ClusterView()
    qtbot.addWidget(view)
    view.show()
    single = Snapshot(seq=1, at=AT, queues=[queue_stats("default")], devices=[gpu(0, None)])
    view.apply_snapshot(single)
    assert view.single.isVisible() and view.single.text() == SINGLE_SERVER
    assert not view.hosts_box.isVisible() and not view.instances_box.isVisible() and not view.gpus_box.isVisible()

    conn = Connection(ConnectionSpec(name="box", url="http://127.0.0.1:9"), None)
    conn.last_snapshot = single
    assert fleet_row(conn, 0)[0] == "box"
    conn.last_snapshot = cluster_snapshot()
    assert fleet_row(conn, 0)[0] == "box · cluster: 3 instances, 1 stale"
    view.apply_snapshot(cluster_snapshot())
    assert not view.single.isVisible() and view.instances_box.isVisible()


def test_a_stale_host_whose_gpus_are_no_longer_listed_keeps_its_last_published_ones_marked(qtbot) -> None:  # type: ignore[no-untyped-def]
    view = ClusterView()
    qtbot.addWidget(view)
    view.apply_snapshot(cluster_snapshot(b_stale=False))
    assert view.gpu_groups() == [("a", ["GPU 0", "GPU 1"]), ("b", ["GPU 0"])]

    quiet = cluster_snapshot(b_stale=True)
    quiet.hosts[0].devices = []  # the deployment drops a stale host's GPUs
    view.apply_snapshot(quiet)
    assert view.gpu_groups() == [("a", ["GPU 0", "GPU 1"]), ("b", ["GPU 0"])]
    b_gpus = view.gpus.topLevelItem(1)
    assert b_gpus.text(0) == "b · 1 GPU · host stale: its last published figures"
    assert b_gpus.child(0).background(0) == STALE_BRUSH

    gone = cluster_snapshot(b_stale=True)
    gone.hosts = gone.hosts[1:]
    gone.instances = [i for i in gone.instances if i.host != "b"]
    view.apply_snapshot(gone)
    assert view.gpu_groups() == [("a", ["GPU 0", "GPU 1"])], "a host no longer listed takes its GPUs with it"
