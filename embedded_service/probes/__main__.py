"""`python -m embedded_service.probes`: print what the probes see, as JSON.

A quick check on a new host (does NVML see the GPUs, which figures are
missing) without starting the service. Exits 0 with or without a GPU.
"""

from __future__ import annotations

import json
import sys
import time

from . import default_probes

CPU_WINDOW_S = 0.5  # host CPU % is a delta: give it a short window to measure


def main() -> int:
    gpu_probe, host_probe = default_probes()
    try:
        devices, reason = gpu_probe.sample()
    finally:
        gpu_probe.close()
    time.sleep(CPU_WINDOW_S)
    report = {
        "devices": [device.model_dump(mode="json") for device in devices],
        "gpu_probe": reason,
        "host": host_probe.sample().model_dump(mode="json"),
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
