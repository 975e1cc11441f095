"""Screenshots of the Cluster page of the real dashboard watching a real 3-instance deployment.

Usage: python grab_cluster.py OUT_DIR [WIDTHxHEIGHT]   (run on an X display, e.g. Xvfb; needs redis-server)
Starts a private redis-server and three `slotdeck serve --store redis://...` on it across two hosts
(`SLOTDECK_HOST_ID` gpu-a: two instances, gpu-b: one; each host declares two GPUs in its config), the
dashboard with one connection given only the first URL (it learns the others), takes a few slots and GPU
leases on both hosts, then saves `cluster-light.png` and `cluster-dark.png`; kills the third
instance (kill -9), waits until the deployment marks it stale, saves `cluster-stale-light.png` (and
`cluster-stale-dark.png`); kills the
first (the one in use), waits for the failover, saves `cluster-failover-light.png`; switches the theme and
saves the same page as `cluster-failover-dark.png`; and `fleet-dark.png` (the overview tab). Prints one line
of facts for the caller to check.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from cluster_serves import Serve, declare_gpus
from redisproc import PrivateRedis

from desktop.app import build
from desktop.connection import ConnectionSpec
from desktop.page import TABS


async def until(check, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def scenario(window, serves: list[Serve], out: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    running = asyncio.ensure_future(window.run())
    window.resize(*size)
    page = await window.first_page_with_data()
    conn = page.conn
    async with httpx.AsyncClient(base_url=serves[1].url, timeout=10) as http:
        await http.put("/v1/queues/inference", json={"limit": 6})
        await http.patch("/v1/queues/default", json={"limit": 4})
        for queue, n in (("default", 1), ("inference", 2)):
            for _ in range(n):
                await http.post(f"/v1/queues/{queue}/leases", json={"ttl_s": 600, "wait_s": 0, "owner": "grab"})
    for serve, gpu_mem in ((serves[0], 8192), (serves[1], 2048), (serves[2], 12288)):  # GPU leases on both hosts
        body = {"ttl_s": 600, "wait_s": 0, "owner": "grab-gpu", "gpus": 1, "gpu_mem_mib": gpu_mem}
        async with httpx.AsyncClient(base_url=serve.url, timeout=10) as http:
            (await http.post("/v1/queues/default/leases", json=body)).raise_for_status()
    page.show_tab(TABS.index("Cluster"))
    await until(lambda: conn.last_snapshot is not None and len(conn.last_snapshot.instances) == 3, 60, "3 instances")
    await until(lambda: len(conn.urls) == 3, 60, "the other two URLs, learnt")
    await asyncio.sleep(3)
    window.grab().save(str(out / "cluster-light.png"))
    window.toggle_theme()
    await asyncio.sleep(1)
    window.grab().save(str(out / "cluster-dark.png"))
    window.toggle_theme()
    await asyncio.sleep(0.5)

    serves[2].kill9()
    inst = page.cluster.instances_model
    states = lambda: [str(inst.index(r, inst.STATE).data()) for r in range(inst.rowCount())]  # noqa: E731
    # the deployment forgets a dead process soon after marking it stale; the page keeps it a while as "gone"
    await until(lambda: any(s.startswith(("stale", "gone")) for s in states()), 90, "a stale or gone instance")
    await asyncio.sleep(0.3)
    window.grab().save(str(out / "cluster-stale-light.png"))
    window.toggle_theme()
    await asyncio.sleep(0.3)
    window.grab().save(str(out / "cluster-stale-dark.png"))
    window.toggle_theme()

    serves[0].kill9()
    await until(lambda: conn.current_url != serves[0].url and conn.state.value == "live", 60, "the failover")
    await asyncio.sleep(3)
    window.grab().save(str(out / "cluster-failover-light.png"))
    window.toggle_theme()
    await asyncio.sleep(2)
    window.grab().save(str(out / "cluster-failover-dark.png"))
    window.screen().grabWindow(0).save(str(out / "screen-dark.png"))
    page.show_tab(0)
    await asyncio.sleep(2)
    window.grab().save(str(out / "fleet-dark.png"))
    frame = window.frameGeometry()
    instances = ",".join(f"{i.host}:{i.pid}:{'stale' if i.stale else 'live'}" for i in conn.last_snapshot.instances)
    print(f"frame={frame.width()}x{frame.height()} on={conn.current_url} state={conn.state.value} instances={instances}")
    window.close()
    await running


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "1280x800").split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        redis = PrivateRedis(Path(tmp))
        redis.start()
        serves: list[Serve] = []
        try:
            # 10 snapshots a second: a killed process shows as stale only briefly before the deployment forgets it
            store = redis.url("grab" + uuid.uuid4().hex[:6])
            for i, host in enumerate(("gpu-a", "gpu-a", "gpu-b")):
                home = Path(tmp) / f"home{i}"
                extra = ("--snapshot-hz", "10", "--config", str(declare_gpus(home)))
                serves.append(Serve(store, home, *extra, env={"SLOTDECK_HOST_ID": host}))
            for serve in serves:
                serve.wait_ready()
            _, loop, window = build(["--no-local", "--theme", "light"])
            spec = ConnectionSpec("gpu-cluster", serves[0].url, remember=False)  # the others are learnt
            window.add_connection(spec, None)
            with loop:
                loop.run_until_complete(scenario(window, serves, out, (width, height)))
        finally:
            for serve in serves:
                serve.stop()
            redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
