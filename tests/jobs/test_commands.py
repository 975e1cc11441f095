"""Command jobs with real processes: process groups, stop, runtime limit, logs, GPUs, slot release."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jobhelpers import process_gone, wait_job

from embedded_service import NoFittingDevice, SlotService
from embedded_service.jobs import JobSettings
from embedded_service.model import DeviceSpec, JobState

SETTINGS = JobSettings(poll_s=0.05, kill_grace_s=1.0, log_max_bytes=4096)

TREE = """
import os, subprocess, sys, time
grandchild = "import time; print('pid', __import__('os').getpid(), flush=True); time.sleep(60)"
child = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(60)"
for _ in range(2):
    kid = subprocess.Popen([sys.executable, "-c", child])
    print("pid", kid.pid, flush=True)
print("pid", os.getpid(), flush=True)
time.sleep(60)
"""


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[SlotService]:
    service = SlotService(store=f"sqlite:///{tmp_path}/cmd.db", jobs=SETTINGS)
    service.configure_queue("default", limit=2)
    async with service:
        yield service


async def pids_in_log(svc: SlotService, job_id: str, count: int) -> list[int]:
    found: list[int] = []

    async def enough() -> bool:
        nonlocal found
        found = [int(p) for p in re.findall(r"^pid (\d+)$", await svc.job_log(job_id), re.MULTILINE)]
        return len(found) >= count

    deadline = asyncio.get_running_loop().time() + 30  # interpreters start slowly on a busy 2-core box
    while asyncio.get_running_loop().time() < deadline:
        if await enough():
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"only {found} in the log of {job_id}")


async def test_cancel_ends_the_whole_process_tree(svc: SlotService) -> None:
    job = await svc.submit_command(py(TREE))
    pids = await pids_in_log(svc, job.id, 5)  # itself, two children, two grandchildren
    assert not any(process_gone(pid) for pid in pids)
    cancelled = await svc.cancel_job(job.id)
    assert cancelled.state is JobState.cancelled
    assert all(process_gone(pid) for pid in pids)
    assert svc.snapshot().queues[0].in_use == 0


async def test_max_runtime_ends_the_process_as_timed_out(svc: SlotService) -> None:
    job = await svc.submit_command(
        py("import os, time; print('pid', os.getpid(), flush=True); time.sleep(60)"), max_runtime_s=0.5
    )
    [pid] = await pids_in_log(svc, job.id, 1)
    done = await wait_job(svc, job.id)
    assert (done.state, done.error) == (JobState.timed_out, "ran past its max_runtime_s")
    assert process_gone(pid)


async def test_the_slot_is_held_until_a_process_that_ignores_sigterm_is_gone(svc: SlotService) -> None:
    stubborn = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('pid', os.getpid(), flush=True); time.sleep(60)"
    )
    job = await svc.submit_command(py(stubborn))
    [pid] = await pids_in_log(svc, job.id, 1)
    cancelling = asyncio.create_task(svc.cancel_job(job.id))
    await asyncio.sleep(0.5)  # inside the 1 s grace: SIGTERM was ignored
    assert not process_gone(pid)
    assert svc.snapshot().queues[0].in_use == 1
    done = await cancelling
    assert done.state is JobState.cancelled
    assert process_gone(pid)
    assert svc.snapshot().queues[0].in_use == 0


async def test_exit_code_and_output_are_recorded(svc: SlotService) -> None:
    job = await svc.submit_command(py("import sys; print('to stdout'); print('to stderr', file=sys.stderr); sys.exit(3)"))
    done = await wait_job(svc, job.id)
    assert (done.state, done.exit_code, done.error) == (JobState.failed, 3, "exited with code 3")
    assert sorted((await svc.job_log(job.id)).splitlines()) == ["to stderr", "to stdout"]
    ok = await wait_job(svc, (await svc.submit_command(py("pass"))).id)
    assert (ok.state, ok.exit_code, ok.pid is not None) == (JobState.succeeded, 0, True)


async def test_a_program_that_cannot_start_fails_with_the_reason(svc: SlotService, tmp_path: Path) -> None:
    done = await wait_job(svc, (await svc.submit_command(["/nonexistent/program"])).id)
    assert done.state is JobState.failed and "cannot start '/nonexistent/program'" in (done.error or "")
    assert "cannot start" in await svc.job_log(done.id)
    bad_cwd = await wait_job(svc, (await svc.submit_command(py("pass"), cwd=str(tmp_path / "missing"))).id)
    assert bad_cwd.state is JobState.failed


async def test_env_and_cwd_are_the_jobs_own(svc: SlotService, tmp_path: Path) -> None:
    code = "import os; print(os.getcwd()); print(os.environ['GREETING'])"
    job = await svc.submit_command(py(code), env={"GREETING": "hi"}, cwd=str(tmp_path))
    await wait_job(svc, job.id)
    assert (await svc.job_log(job.id)).splitlines() == [str(tmp_path), "hi"]


async def test_processes_left_behind_by_a_finished_command_are_stopped(svc: SlotService) -> None:
    code = (
        "import subprocess, sys; "
        "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('pid', kid.pid, flush=True)"
    )
    job = await svc.submit_command(py(code))
    done = await wait_job(svc, job.id)
    assert done.state is JobState.succeeded
    [kid] = [int(p) for p in re.findall(r"pid (\d+)", await svc.job_log(job.id))]
    assert process_gone(kid)


async def test_log_tail_is_served_and_the_file_stays_capped(svc: SlotService) -> None:
    job = await svc.submit_command(py("for i in range(3000): print(f'line {i}', flush=True)"))
    await wait_job(svc, job.id)
    assert (await svc.job_log(job.id, tail=3)).splitlines() == ["line 2997", "line 2998", "line 2999"]
    path = svc.job_log_path(job.id)
    assert path is not None and path.parent.name == "cmd.db-logs"
    assert path.stat().st_size <= 4096
    assert path.with_name(path.name + ".1").stat().st_size <= 4096
    # a longer tail reaches into the rotated file: whole lines, in order, ending with the last
    numbers = [int(line.removeprefix("line ")) for line in (await svc.job_log(job.id, tail=300)).splitlines()]
    assert len(numbers) == 300 and numbers == sorted(numbers) and numbers[-1] == 2999
    assert await svc.job_log(job.id, tail=0) == ""


async def test_granted_gpus_are_the_only_ones_visible(tmp_path: Path) -> None:
    devices = [DeviceSpec(index=0, memory_total_mib=1000), DeviceSpec(index=1, memory_total_mib=1000)]
    report = "import os, time; print(repr(os.environ['CUDA_VISIBLE_DEVICES'])); time.sleep(0.5)"
    async with SlotService(store=f"sqlite:///{tmp_path}/gpu.db", devices=devices, jobs=SETTINGS) as svc:
        svc.configure_queue("train", limit=3, per_gpu=1)
        two = [await svc.submit_command(py(report), queue="train", gpus=1) for _ in range(2)]
        none = await svc.submit_command(py(report), queue="train")
        with pytest.raises(NoFittingDevice):
            await svc.submit_command(py(report), queue="train", gpus=3)
        seen = set()
        for job in two:
            done = await wait_job(svc, job.id)
            assert done.state is JobState.succeeded
            assert (await svc.job_log(job.id)).strip() == repr(str(done.devices[0]))
            seen.add(done.devices[0])
        assert seen == {0, 1}
        await wait_job(svc, none.id)
        assert (await svc.job_log(none.id)).strip() == repr("")


async def test_memory_store_logs_live_in_a_temp_dir_removed_at_close() -> None:
    async with SlotService(store="memory://", jobs=SETTINGS) as svc:
        svc.configure_queue("default", limit=1)
        job = await wait_job(svc, (await svc.submit_command(py("print('x')"))).id)
        path = svc.job_log_path(job.id)
        assert path is not None and path.read_text() == "x\n"
    assert not path.exists()
    assert os.path.isdir(path.parent) is False


async def test_a_running_command_shows_its_process_tree_figures(tmp_path: Path) -> None:
    from embedded_service.probes.host import HostProbe

    settings = JobSettings(poll_s=0.05, kill_grace_s=1.0)
    busy = "import time\nblob = bytearray(64 * 1024 * 1024)\nend = time.time() + 30\nwhile time.time() < end: pass"
    async with SlotService(store=f"sqlite:///{tmp_path}/live.db", host_probe=HostProbe(), jobs=settings) as svc:
        svc.configure_queue("default", limit=1)
        job = await svc.submit_command(py(busy))
        live = await wait_job(svc, job.id, lambda j: (j.rss_mib or 0) > 64 and (j.cpu_pct or 0) > 10)
        assert live.state is JobState.running and live.pid is not None
        await svc.cancel_job(job.id)
        stored = await svc.get_job(job.id)
        assert stored.cpu_pct is None  # live figures are shown while it runs, not stored
