"""The CUDA variables a command job gets for its granted GPUs (one function, so env policies can call it)."""

from __future__ import annotations

from collections.abc import Sequence


def cuda_env(devices: Sequence[int | str]) -> dict[str, str]:
    """`CUDA_VISIBLE_DEVICES` naming exactly the granted GPUs, in a form CUDA and NVML agree on.

    `devices` are the GPUs' UUIDs (`GPU-...`, preferred: they name one card
    whatever the ordering) or NVML indices (the PCI bus order). Either way
    `CUDA_DEVICE_ORDER=PCI_BUS_ID` is forced, so CUDA numbers the cards as NVML
    does; an inherited `FASTEST_FIRST` (CUDA's own default) would let CUDA's
    index 0 be another card than NVML's. No devices: `CUDA_VISIBLE_DEVICES=""`,
    the job sees no GPU. Applied after the job's own variables: they cannot
    widen what was granted.
    """
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in devices), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
