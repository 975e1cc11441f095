"""GPU admission cost: acquire+release of a 1-GPU memory request against a plain slot, with leases held.

Prints microseconds per acquire+release (best of N) of `slot("q")` and of
`slot("q", gpus=1, gpu_mem_mib=...)` on 8 GPUs that already hold `--held`
leases (each device's free memory is recomputed from its leases and processes
for every placement), and the ratio between the two, measured in one run.

    python benchmarks/gpu.py [--iterations 20000] [--held 64] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from embedded_service import SlotService
from embedded_service.model import DeviceInfo, GpuProcess


async def per_op_us(svc: SlotService, iterations: int, **request: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        async with svc.slot("q", **request):
            pass
    return (time.perf_counter() - start) / iterations * 1e6


async def main(iterations: int, held: int, repeat: int) -> None:
    async with SlotService(sample_interval_s=3600) as svc:
        processes = [GpuProcess(pid=10_000 + i, used_mib=500) for i in range(8)]
        svc.engine.update_devices(
            [
                DeviceInfo(index=i, memory_total_mib=81_920, memory_used_mib=4_000, processes=processes, source="nvml")
                for i in range(8)
            ]
        )
        svc.configure_queue("q", limit=held + 1)
        leases = [await svc.acquire("q", gpus=1, gpu_mem_mib=1_000) for _ in range(held)]
        plain = min([await per_op_us(svc, iterations) for _ in range(repeat)])
        gpu = min([await per_op_us(svc, iterations, gpus=1, gpu_mem_mib=1_000) for _ in range(repeat)])
        for lease in leases:
            svc.release(lease)
    print(f"acquire+release with {held} GPU leases held on 8 GPUs, best of {repeat} x {iterations}")
    print(f"  plain slot               {plain:8.2f} us")
    print(f"  gpus=1, gpu_mem_mib=1000 {gpu:8.2f} us")
    print(f"  ratio                    {gpu / plain:8.2f} x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--held", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.iterations, args.held, args.repeat))
