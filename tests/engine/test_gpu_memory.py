"""The memory rule of `DevicePool`: foreign memory from per-process figures, and what is assumed without them."""

from __future__ import annotations

from embedded_service.engine.devices import DevicePool
from embedded_service.model import DeviceInfo, GpuProcess

SERVICE_PID, OTHER_PID, JOB_PID = 100, 200, 300


def pool_with(used: int, processes: list[GpuProcess], per_process: bool = True) -> DevicePool:
    pool = DevicePool()
    info = DeviceInfo(
        index=0, memory_total_mib=16_000, memory_used_mib=used, processes=processes, per_process=per_process, source="nvml"
    )
    pool.update([info], now=0.0)
    return pool


def free(pool: DevicePool) -> int | None:
    return pool.free_mib(pool.devices[0], 0.0)


def test_a_slot_holders_own_use_is_not_counted_twice() -> None:
    """slot() holders' processes are unknown: memory up to their reservations is assumed theirs."""
    pool = pool_with(8_000 + 1_000, [GpuProcess(pid=SERVICE_PID, used_mib=8_000), GpuProcess(pid=OTHER_PID, used_mib=1_000)])
    pool.assign("slot", "q", [0], 8_000)  # not tracked: a slot() lease
    assert (pool.foreign_mib(pool.devices[0]), free(pool)) == (1_000, 7_000)


def test_job_processes_are_charged_what_they_use_and_the_rest_is_foreign() -> None:
    pool = pool_with(6_000, [GpuProcess(pid=JOB_PID, used_mib=5_000), GpuProcess(pid=OTHER_PID, used_mib=1_000)])
    pool.assign("job", "q", [0], 4_000, tracked=True)
    pool.set_lease_pids("job", frozenset({JOB_PID}))
    assert (pool.foreign_mib(pool.devices[0]), free(pool)) == (1_000, 16_000 - 1_000 - 5_000)
    pool.assign("idle-job", "q", [0], 4_000, tracked=True)  # granted, nothing allocated yet: its reservation counts
    assert free(pool) == 16_000 - 1_000 - 5_000 - 4_000


def test_a_withheld_figure_or_no_process_list_falls_back_to_reservations_first() -> None:
    withheld = pool_with(6_000, [GpuProcess(pid=JOB_PID, used_mib=None), GpuProcess(pid=OTHER_PID, used_mib=1_000)])
    withheld.assign("job", "q", [0], 4_000, tracked=True)
    withheld.set_lease_pids("job", frozenset({JOB_PID}))
    assert free(withheld) == 16_000 - (6_000 - 4_000) - 4_000  # its use is unknown: up to 4,000 of 6,000 is its own
    blind = pool_with(1_000, [], per_process=False)
    for n in range(3):
        blind.assign(f"job{n}", "q", [0], 4_000, tracked=True)
    assert free(blind) == 16_000 - 12_000, "no per-process figures: max(used, reserved), as the module doc says"


def test_a_released_lease_forgets_its_processes() -> None:
    pool = pool_with(0, [])
    pool.assign("job", "q", [0], 4_000, tracked=True)
    pool.set_lease_pids("job", frozenset({JOB_PID}))
    pool.unassign("job", "q", [0], 4_000)
    assert pool.lease_pids == {} and free(pool) == 16_000
    pool.set_lease_pids("job", frozenset({JOB_PID}))  # a late report about a released lease is ignored
    assert pool.lease_pids == {}
