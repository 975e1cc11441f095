"""The dashboard against a real redis-mode deployment (real `slotdeck serve` processes on a private Redis, real
HTTP over loopback, the real main window): it learns the other instances' URLs from the snapshots and fails
over to one it was never told about; the Cluster page groups the GPUs each host declares, with the figures
the servers publish, and a GPU lease taken on one host shows against that host's device."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster_serves import DECLARED_GIB, Serve, declare_gpus, start_serves
from desktop_harness import QtLoop
from keyring.backends import fail
from PySide6.QtCore import QSettings, Qt

from desktop.connection import Connection, ConnectionSpec, LinkState
from desktop.credentials import TokenVault
from desktop.page import TABS
from desktop.settings import AppSettings
from desktop.views.cluster import GPU_HEADERS
from desktop.window import MainWindow


@pytest.fixture
def window(qloop: QtLoop, tmp_path: Path) -> Iterator[MainWindow]:  # type: ignore[no-untyped-def]
    """The real main window, no local service, temp settings, no keyring; its connections closed afterwards."""
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    win = MainWindow(settings, TokenVault(fail.Keyring()), None)
    win.show()
    try:
        yield win
    finally:
        for page in list(win.pages.values()):
            qloop.run(page.conn.close())
        win.deleteLater()


def limit_of(conn: Connection, queue: str = "default") -> int | None:
    snap = conn.last_snapshot
    return next((q.config.limit for q in snap.queues if q.config.name == queue), None) if snap else None


def test_given_one_url_the_dashboard_learns_the_others_and_fails_over_to_one_it_was_not_told(  # type: ignore[no-untyped-def]
    qloop: QtLoop, private_redis, tmp_path: Path, window: MainWindow
) -> None:
    a, b = start_serves(private_redis.url("e" + uuid.uuid4().hex[:8]), tmp_path, 2)
    try:
        page = window.add_connection(ConnectionSpec("deploy", a.url, remember=False), None)
        conn = page.conn
        assert conn.urls.all == (a.url,), "told about A only"
        qloop.until(lambda: conn.state is LinkState.live and conn.last_snapshot, timeout=60, what="live through A")
        qloop.until(lambda: b.url in conn.urls.all, timeout=60, what="B's URL, learnt from the snapshots")
        assert conn.spec.learnt_urls == (b.url,) and conn.spec.extra_urls == ()

        a.kill9()
        qloop.until(
            lambda: conn.current_url == b.url and conn.state is LinkState.live and not conn.stale,
            timeout=60,
            what="live again, through the learnt URL of B",
        )
        # the "Lost connection" alert of the failover does not stand over the working connection
        qloop.until(lambda: window.statusBar().currentMessage() != "", timeout=10, what="a status line")
        assert window.statusBar().currentMessage() == f"deploy: connected again via {b.url}"
        assert [a.title for a in window.notifier.history] == ["Lost connection to deploy"], "the loss is on record"
        httpx.patch(f"{b.url}/v1/queues/default", json={"limit": 9}, timeout=10).raise_for_status()
        qloop.until(lambda: limit_of(conn) == 9, timeout=30, what="a limit set through B, live on the dashboard")
        page.show_tab(TABS.index("Cluster"))
        cluster = page.cluster
        inst = cluster.instances_model
        qloop.until(
            lambda: any(inst.index(r, inst.STATE).data() == "live · connected" for r in range(inst.rowCount())),
            timeout=30,
            what="B marked as the connected instance",
        )
        connected = [r for r in range(inst.rowCount()) if inst.index(r, inst.STATE).data() == "live · connected"]
        assert [inst.index(r, inst.URL).data() for r in connected] == [b.url]
        assert cluster.on.text() == f"Reading from {b.url}"
        # the deployment lists the killed A as live until its liveness TTL (30 s) runs out; the page says that
        # it did not answer here (A's row may already read stale or gone on a slow machine)
        [a_state] = [
            inst.index(r, inst.STATE).data() for r in range(inst.rowCount()) if inst.index(r, inst.URL).data() == a.url
        ]
        assert a_state == "live · did not answer this dashboard" or a_state.startswith(("stale", "gone")), a_state
    finally:
        a.stop()
        b.stop()


def gpu_rows(view) -> dict[tuple[str, str], dict[str, str]]:  # type: ignore[no-untyped-def]
    """(host, 'GPU n') -> {header: cell} for every GPU the Cluster page lists."""
    rows = {}
    for i in range(view.gpus.topLevelItemCount()):
        top = view.gpus.topLevelItem(i)
        host = top.data(0, Qt.ItemDataRole.UserRole)
        for j in range(top.childCount()):
            child = top.child(j)
            rows[(host, child.text(0))] = {h: child.text(c) for c, h in enumerate(GPU_HEADERS)}
    return rows


def test_gpus_declared_on_two_hosts_are_grouped_by_host_and_a_lease_shows_on_its_hosts_device(  # type: ignore[no-untyped-def]
    qloop: QtLoop, private_redis, tmp_path: Path, window: MainWindow
) -> None:
    store = private_redis.url("g" + uuid.uuid4().hex[:8])
    serves: list[Serve] = []
    try:
        for host in ("gpu-a", "gpu-b"):
            home = tmp_path / host
            serves.append(Serve(store, home, "--config", str(declare_gpus(home)), env={"SLOTDECK_HOST_ID": host}))
        for serve in serves:
            serve.wait_ready()
        on_a, on_b = serves
        # the dashboard reads from gpu-b: what it shows of gpu-a comes through the deployment, not from gpu-a
        page = window.add_connection(ConnectionSpec("gpus", on_b.url, remember=False), None)
        page.show_tab(TABS.index("Cluster"))
        view = page.cluster
        both = [("gpu-a", ["GPU 0", "GPU 1"]), ("gpu-b", ["GPU 0", "GPU 1"])]
        qloop.until(lambda: view.gpu_groups() == both, timeout=60, what="two GPUs under each of the two hosts")
        qloop.until(lambda: view.hosts_model.rowCount() == 2, timeout=30, what="both hosts listed")
        hosts = view.hosts_model
        assert [hosts.index(r, hosts.HOST).data() for r in range(2)] == ["gpu-a", "gpu-b"]
        assert [hosts.index(r, hosts.GPUS).data() for r in range(2)] == ["2", "2"]
        rows = gpu_rows(view)
        for (host, gpu), cells in rows.items():
            index = gpu.split()[-1]
            assert cells["Name"] == f"Test GPU {index}", (host, cells)
            assert cells["Memory used"] == f"unknown of {DECLARED_GIB:.1f} GiB", (host, cells)
            assert cells["Reserved"] == "0.0 GiB" and cells["Leases"] == "", (host, cells)
        assert "4 GPUs" in view.totals.text()

        granted = httpx.post(
            f"{on_a.url}/v1/queues/default/leases",
            json={"gpus": 1, "gpu_mem_mib": 4096, "ttl_s": 600, "wait_s": 0, "owner": "e2e"},
            timeout=10,
        )
        assert granted.status_code == 201, granted.text
        lease = granted.json()["lease"]
        assert lease["host"] == "gpu-a"
        placed = f"GPU {lease['devices'][0]}"
        qloop.until(lambda: gpu_rows(view)[("gpu-a", placed)]["Leases"] == "1", timeout=30, what="the lease on gpu-a's GPU")
        rows = gpu_rows(view)
        assert rows[("gpu-a", placed)]["Reserved"] == "4.0 GiB"
        others = {key: cells for key, cells in rows.items() if key != ("gpu-a", placed)}
        assert len(others) == 3 and all(c["Leases"] == "" and c["Reserved"] == "0.0 GiB" for c in others.values())
    finally:
        for serve in serves:
            serve.stop()
