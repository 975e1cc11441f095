"""Revoking a command job's lease (`slotdeck cancel --lease`, `POST /v1/leases/{id}/revoke`) stops the job as a
cancel does, and hands its slot and GPU memory on only once its processes are gone.

Before, the revoke dropped the lease at once: the next GPU job was admitted into the revoked job's memory while
the revoked job's processes, which ignore SIGTERM for the kill grace, still ran on the card.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobhelpers import wait_job, wait_until

from embedded_service import SlotService
from embedded_service.jobs import JobSettings
from embedded_service.model import DeviceSpec, JobState

SETTINGS = JobSettings(poll_s=0.05, kill_grace_s=1.0)

STUBBORN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""

# run by the next job when it starts: is the revoked job's process still running on "its" GPU?
CHECK = """
import sys
pid = open(sys.argv[1]).read()
try:
    stat = open(f"/proc/{pid}/stat").read()
    state = stat[stat.rfind(")") + 2]
except OSError:
    state = "gone"
print("previous job:", "running" if state not in ("Z", "X", "gone") else "gone")
"""


async def test_revoking_a_jobs_lease_hands_its_gpu_on_only_after_its_processes_are_gone(tmp_path: Path) -> None:
    pidfile = tmp_path / "stubborn.pid"
    device = DeviceSpec(index=0, name="declared", memory_total_mib=16_000)
    async with SlotService(store=f"sqlite:///{tmp_path}/r.db", jobs=SETTINGS, devices=[device]) as svc:
        svc.configure_queue("gpu", limit=4)
        first = await svc.submit_command([sys.executable, "-c", STUBBORN, str(pidfile)], queue="gpu", gpu_mem_mib=12_000)
        await wait_until(pidfile.exists, what="the first job running")
        second = await svc.submit_command([sys.executable, "-c", CHECK, str(pidfile)], queue="gpu", gpu_mem_mib=12_000)
        await wait_until(lambda: len(svc.snapshot().waiters) == 1, what="the second job waiting for GPU memory")
        running = await svc.get_job(first.id)
        assert running.lease_id is not None
        assert svc.revoke(running.lease_id)
        done = await wait_job(svc, second.id, timeout=60)
        assert done.state is JobState.succeeded, done.error
        assert (await svc.job_log(second.id)).strip() == "previous job: gone"
        revoked = await wait_job(svc, first.id)
        assert revoked.state is JobState.cancelled
