"""The engine's time does not follow the wall clock's jumps: waiter deadlines, rate buckets and stuck
flags are measured on a clock anchored at start and moved by the monotonic clock.

The boundary mocked is the system clock itself: a child process replaces `time.time` with one that can
be set off by an hour *before* SlotDeck is imported, as if an operator or NTP stepped the clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent(
    """
    import asyncio, json, sys, time
    real, off = time.time, [0.0]
    time.time = lambda: real() + off[0]
    from embedded_service import SlotService
    from embedded_service.errors import SlotTimeout

    async def main(by):
        out = {}
        async with SlotService(sample_interval_s=3600) as svc:
            svc.configure_queue("q", limit=0, timeout_s=300)
            svc.configure_queue("r", limit=10, rate=5, burst=1)
            svc.configure_queue("s", limit=1, stuck_after_s=600)
            held = await svc.acquire("s")
            first = await svc.acquire("r")
            waiter = asyncio.ensure_future(svc.acquire("q", timeout_s=2))
            patient = asyncio.ensure_future(svc.acquire("q", timeout_s=300))
            await asyncio.sleep(0.05)
            off[0] = by
            started = time.monotonic()
            try:
                await asyncio.wait_for(waiter, 20)
            except SlotTimeout:
                out["timed_out_after_s"] = round(time.monotonic() - started, 1)
            except TimeoutError:
                out["timed_out_after_s"] = None
            out["patient_still_waiting"] = not patient.done()
            patient.cancel()
            try:
                second = await asyncio.wait_for(svc.acquire("r"), 20)
                out["rate_admitted"] = True
                svc.release(second)
            except TimeoutError:
                out["rate_admitted"] = False
            out["stuck"] = any(info.stuck for info in svc.snapshot().leases)
            svc.release(held)
            svc.release(first)
        print(json.dumps(out))

    asyncio.run(main(float(sys.argv[1])))
    """
)


def scenario(by: float) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(by)], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_wall_clock_set_back_an_hour_stretches_no_timeout_and_stalls_no_rate() -> None:
    out = scenario(-3600.0)
    assert out["timed_out_after_s"] is not None, "a timeout_s=2 waiter must not wait an hour"
    assert out["rate_admitted"], "a rate of 5/s must admit the next one on schedule, not in an hour"


def test_a_wall_clock_set_forward_an_hour_times_out_nobody_early_and_flags_nobody_stuck() -> None:
    out = scenario(3600.0)
    assert out["patient_still_waiting"], "a 300 s waiter must not time out because the clock jumped"
    assert out["stuck"] is False, "a lease held for a second is not stuck after 600 s"


def test_the_scenario_itself_times_out_and_admits_on_a_steady_clock() -> None:
    out = scenario(0.0)
    assert out["timed_out_after_s"] is not None and out["patient_still_waiting"] and out["rate_admitted"]
    assert out["stuck"] is False
