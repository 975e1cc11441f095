"""DevicesView on real widgets (offscreen): memory used against reserved, figures, leases, errors, no-GPU reason."""

from __future__ import annotations

import pytest

from desktop.views.devices import DevicesView, memory_caption
from embedded_service.model import DeviceInfo, LeaseInfo, Snapshot


def device(index: int, **kw: object) -> DeviceInfo:
    figures = {"name": "NVIDIA H100", "memory_total_mib": 81920, "memory_used_mib": 12288, "memory_reserved_mib": 40960}
    return DeviceInfo(index=index, **{**figures, **kw})


def lease(lease_id: str, gpu: int, **kw: object) -> LeaseInfo:
    return LeaseInfo(id=lease_id, queue="chat", fence=1, devices=[gpu], granted_at=0.0, **kw)


def snapshot(devices: list[DeviceInfo], leases: list[LeaseInfo] = (), gpu_probe: str | None = None) -> Snapshot:
    return Snapshot(seq=1, at=1.0, queues=[], devices=devices, leases=list(leases), gpu_probe=gpu_probe)


@pytest.fixture
def view(qtbot) -> DevicesView:  # type: ignore[no-untyped-def]
    v = DevicesView()
    qtbot.addWidget(v)
    v.resize(800, 600)
    v.show()
    return v


def test_card_shows_used_against_reserved_memory_and_figures(view: DevicesView) -> None:
    view.apply_snapshot(snapshot([device(0, utilization_pct=87.4, temperature_c=61.0)]))
    card = view.card(0)
    assert card.title.text() == "GPU 0 · NVIDIA H100"
    assert card.memory.text() == "used 12.0 of 80.0 GiB · reserved 40.0 GiB"
    assert card.figures.text().startswith("utilisation 87 % · temperature 61 °C")
    assert card.memory_bar.toolTip() == card.memory.text()
    assert not card.error.isVisibleTo(view)


def test_unknown_figures_are_said_plainly(view: DevicesView) -> None:
    view.apply_snapshot(snapshot([device(0, memory_used_mib=None, error="NVML: GPU is lost")]))
    card = view.card(0)
    assert card.memory.text() == "used unknown of 80.0 GiB · reserved 40.0 GiB"
    assert card.figures.text().startswith("utilisation — · temperature —")
    assert card.error.isVisibleTo(view) and "NVML: GPU is lost" in card.error.text()
    assert memory_caption(None, 2048, 0) == "used 2.0 GiB · reserved 0.0 GiB · total unknown"


def test_leases_on_a_gpu_name_queue_owner_and_job(view: DevicesView) -> None:
    leases = [lease("L1", 0, owner="alice", job_id="job-7", gpu_mem_mib=20480, stuck=True), lease("L2", 1)]
    view.apply_snapshot(snapshot([device(0, leases=["L1", "gone"]), device(1, leases=["L2"])], leases))
    text = view.card(0).leases.text()
    assert "chat · alice · job job-7 · 20.0 GiB · stuck" in text
    assert "lease gone" in text  # a lease the snapshot no longer lists still shows by id
    assert "chat · anonymous · lease L2" in view.card(1).leases.text()
    view.apply_snapshot(snapshot([device(0), device(1)]))
    assert view.card(0).leases.text() == "No leases"


def test_cards_follow_devices_and_no_gpu_reason_is_shown(view: DevicesView) -> None:
    view.apply_snapshot(snapshot([device(1), device(0)]))
    assert view.device_indexes() == [0, 1]
    assert not view.reason.isVisible()
    kept = view.card(1)
    view.apply_snapshot(snapshot([device(1)]))
    assert view.device_indexes() == [1] and view.card(1) is kept
    view.apply_snapshot(snapshot([], gpu_probe="NVML unavailable: libnvidia-ml.so.1 not found"))
    assert view.device_indexes() == []
    assert view.reason.isVisible()
    assert view.reason.text() == "No GPUs: NVML unavailable: libnvidia-ml.so.1 not found"


def test_memory_bar_paints_used_inside_reserved(view: DevicesView) -> None:
    view.apply_snapshot(snapshot([device(0, memory_used_mib=20480, memory_reserved_mib=61440)]))
    bar = view.card(0).memory_bar
    image = bar.grab().toImage()
    y = image.height() // 2
    at = [image.pixelColor(int(image.width() * f), y).name() for f in (0.1, 0.5, 0.9)]
    edge = [image.pixelColor(int(image.width() * f), 1).name() for f in (0.1, 0.5)]
    assert at[0] == "#3fb950"  # used (a quarter of the total) in the middle band
    assert at[1] != at[0] and at[1] == edge[0] == edge[1]  # reserved (three quarters) over the full height
    assert at[2] != at[1]  # free


def test_health_and_its_reason_say_what_it_means_for_new_work(view: DevicesView) -> None:
    view.apply_snapshot(snapshot([device(0), device(1, health="lost", health_reason="NVML reports the GPU lost")]))
    assert not view.card(0).health.isVisibleTo(view)
    lost = view.card(1).health
    assert lost.isVisibleTo(view)
    assert lost.text() == "⚠ GPU lost: no new work (NVML reports the GPU lost)"
    stale = device(0, health="stale", health_reason="memory reading failed (NVML: Unknown Error)")
    view.apply_snapshot(snapshot([stale]))
    assert view.card(0).health.text().startswith("⚠ Last reading failed: admitting on the last good figures")
    view.apply_snapshot(snapshot([device(0, health="unreadable", health_reason="memory reading failed (x)")]))
    assert view.card(0).health.text() == "⚠ Memory unknown: no new work that asks for GPU memory (memory reading failed (x))"
    view.apply_snapshot(snapshot([device(0, health="unified", memory_total_mib=None, memory_budget_mib=None)]))
    assert "memory requests are refused, no budget is set" in view.card(0).health.text()
    view.apply_snapshot(snapshot([device(0, health="unified", memory_total_mib=None, memory_budget_mib=8192)]))
    assert "against a budget of 8.0 GiB" in view.card(0).health.text()


def test_admission_figures_and_the_gpu_selection_are_shown(view: DevicesView) -> None:
    snap = snapshot([device(0, memory_free_mib=30720, memory_foreign_mib=1024)])
    snap.gpu_selection = "CUDA_VISIBLE_DEVICES=0: GPUs 0 of 2"
    view.apply_snapshot(snap)
    card = view.card(0)
    assert card.admission.text() == "free for new leases 30.0 GiB · other programs 1.0 GiB"
    assert view.selection.isVisibleTo(view)
    assert view.selection.text() == "Using only some GPUs: CUDA_VISIBLE_DEVICES=0: GPUs 0 of 2"
    view.apply_snapshot(snapshot([device(0, memory_free_mib=4096, per_process=False)]))
    assert "no per-process figures" in view.card(0).admission.text()
    assert not view.selection.isVisibleTo(view)
