"""NvmlProbe: real library without a driver here; a stand-in NVML module for GPU paths."""

from __future__ import annotations

import pytest
from fake_nvml import MIB, FakeGpu, FakeNvml

from embedded_service.model import DeviceInfo, GpuProcess
from embedded_service.probes import NvmlProbe
from embedded_service.probes.nvml import gpu_mem_used_mib


def test_real_library_without_driver_reports_one_line_reason(no_nvml_here: None) -> None:
    probe = NvmlProbe()
    devices, reason = probe.sample()
    assert devices == []
    assert reason == "NVML unavailable: NVML Shared Library Not Found"
    assert probe.sample() == ([], reason)  # asked again: same answer, no exception
    probe.close()  # never initialised: nothing to shut down, no error


def test_reads_every_figure_of_every_gpu() -> None:
    nvml = FakeNvml([FakeGpu(), FakeGpu(name="Fake A100", uuid="GPU-1", bus_id=b"00000000:02:00.0", used_mib=0)])
    devices, reason = NvmlProbe(nvml=nvml).sample()
    assert reason is None
    assert devices[0] == DeviceInfo(
        index=0,
        uuid="GPU-00000000-0000-0000-0000-000000000000",
        name="Fake H100",
        pci_bus_id="00000000:01:00.0",
        memory_total_mib=16_000,
        memory_used_mib=1_000,
        utilization_pct=37.0,
        temperature_c=55.0,
        source="nvml",
    )
    assert [(d.index, d.name, d.uuid, d.memory_used_mib) for d in devices[1:]] == [(1, "Fake A100", "GPU-1", 0)]


def test_gpu_that_cannot_report_a_figure_still_appears() -> None:
    nvml = FakeNvml([FakeGpu(), FakeGpu(unsupported={"temperature", "utilization"}), FakeGpu(lost=True)])
    devices, reason = NvmlProbe(nvml=nvml).sample()

    assert [d.index for d in devices] == [0, 1, 2]
    healthy, partial, lost = devices
    assert healthy.error is None
    assert partial.temperature_c is None and partial.utilization_pct is None
    assert partial.memory_total_mib == 16_000 and partial.name == "Fake H100"  # what it can report is kept
    assert partial.error == "missing utilization_pct (Not Supported), temperature_c (Not Supported)"
    assert lost.error == "unreachable: device (GPU is lost)"
    assert lost.memory_total_mib is None and lost.source == "nvml"
    assert reason == f"GPU 1: {partial.error}; GPU 2: {lost.error}"
    assert "\n" not in reason


def test_missing_memory_leaves_both_memory_figures_unknown() -> None:
    devices, _ = NvmlProbe(nvml=FakeNvml([FakeGpu(unsupported={"memory", "graphics"})])).sample()
    (device,) = devices
    assert device.memory_total_mib is None and device.memory_used_mib is None
    assert device.error == "missing memory (Not Supported), graphics processes (Not Supported)"


def test_per_process_gpu_memory_from_compute_and_graphics() -> None:
    gpu0 = FakeGpu(
        compute=[(4242, 3_000 * MIB), (77, None)],  # None: the driver withholds the figure
        graphics=[(4242, 3_000 * MIB), (99, 120 * MIB)],  # 4242 has both contexts: listed twice by NVML
    )
    gpu1 = FakeGpu(compute=[(4243, 500 * MIB)])
    devices, reason = NvmlProbe(nvml=FakeNvml([gpu0, gpu1])).sample()
    assert reason is None
    assert devices[0].processes == [
        GpuProcess(pid=77, used_mib=None),
        GpuProcess(pid=99, used_mib=120),
        GpuProcess(pid=4242, used_mib=3_000),
    ]
    # A job whose tree is {4242, 4243, 5000} really uses 3000 + 500 MiB over both GPUs.
    assert gpu_mem_used_mib(devices, {4242, 4243, 5000}) == 3_500
    assert gpu_mem_used_mib(devices, {77}) == 0  # on a GPU, figure withheld
    assert gpu_mem_used_mib(devices, {5000}) is None  # not on any GPU


def test_no_gpu_under_a_working_driver() -> None:
    assert NvmlProbe(nvml=FakeNvml([])).sample() == ([], "NVML found no GPU")


def test_init_once_and_shutdown_on_close() -> None:
    nvml = FakeNvml([FakeGpu()])
    probe = NvmlProbe(nvml=nvml)
    for _ in range(3):
        assert len(probe.sample()[0]) == 1
    assert nvml.init_calls == 1
    probe.close()
    probe.close()
    assert nvml.shutdown_calls == 1


def test_failed_init_is_not_retried_before_the_retry_delay() -> None:
    nvml = FakeNvml([FakeGpu()], init_failures=1)
    probe = NvmlProbe(nvml=nvml, retry_after_s=3600)
    assert probe.sample() == ([], "NVML unavailable: Driver Not Loaded")
    assert probe.sample() == ([], "NVML unavailable: Driver Not Loaded")
    assert nvml.init_calls == 1


def test_driver_that_appears_later_is_picked_up() -> None:
    nvml = FakeNvml([FakeGpu()], init_failures=2)
    probe = NvmlProbe(nvml=nvml, retry_after_s=0)
    assert probe.sample()[0] == []
    assert probe.sample()[0] == []
    devices, reason = probe.sample()
    assert [d.name for d in devices] == ["Fake H100"] and reason is None
    assert nvml.init_calls == 3


def test_driver_lost_while_running_is_reported_and_reinitialised() -> None:
    nvml = FakeNvml([FakeGpu()])
    probe = NvmlProbe(nvml=nvml, retry_after_s=0)
    assert len(probe.sample()[0]) == 1
    nvml.driver_gone = True
    assert probe.sample() == ([], "NVML unavailable: Uninitialized")
    assert nvml.shutdown_calls == 1
    devices, _ = probe.sample()  # re-initialised (the fake's init brings the driver back)
    assert len(devices) == 1 and nvml.init_calls == 2


@pytest.mark.gpu
def test_real_gpu_figures(real_gpu_count: int) -> None:
    probe = NvmlProbe()
    try:
        devices, reason = probe.sample()
    finally:
        probe.close()
    assert [d.index for d in devices] == list(range(real_gpu_count)), reason
    for device in devices:
        assert device.source == "nvml"
        assert device.name and device.name != "GPU"
        assert device.uuid is not None and device.uuid.startswith("GPU-")
        assert device.pci_bus_id
        assert device.memory_total_mib is not None and device.memory_total_mib > 0
        assert device.memory_used_mib is not None and 0 <= device.memory_used_mib <= device.memory_total_mib
