from __future__ import annotations

import pynvml
import pytest


def real_nvml_gpus() -> int | None:
    """How many GPUs the real NVML sees here, or None without a driver."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        return pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()


@pytest.fixture(scope="session")
def no_nvml_here() -> None:
    """Tests of the no-driver path run against the real library, so only where it finds no driver."""
    if real_nvml_gpus() is not None:
        pytest.skip("an NVIDIA driver is present here; the no-driver path is covered on hosts without one")


@pytest.fixture(scope="session")
def real_gpu_count() -> int:
    """Tests of real GPU figures run only where NVML finds a GPU."""
    count = real_nvml_gpus()
    if count is None:
        pytest.skip("no NVIDIA driver here (NVML not loadable)")
    if count == 0:
        pytest.skip("NVML loads but sees no GPU here")
    return count
