"""CPU and memory of the running dashboard under a 10 Hz feed, and the time of a full-window redraw, in one run.

    .venv/bin/python benchmarks/desktop.py [--seconds 60] [--baseline-seconds 10] [--queues 10] [--gpus 8] [--hz 10]
        [--connections 1] [--trace-rss SECONDS --trace-csv PATH [--trace-every 15] [--trace-warmup 300]]

A synthetic service (`python -m embedded_service.demo`: queues with workers, synthetic GPUs, snapshots
pushed at --hz) runs in its own process. In this process:
  1. baseline: a bare QApplication + qasync loop with an empty QMainWindow, idle for --baseline-seconds
     (the cost of Qt + the interpreter doing nothing);
  2. the real dashboard (desktop.app.build, as `slotdeck gui --no-local --connect URL`), 1600x1000, on the
     Overview tab, connected to that service; after it is live and a warm-up, --seconds of measurement;
  3. full-window redraw: window.grab() (renders the whole window to a pixmap) and overview.redraw() +
     processEvents(), 20 times each.
CPU is this process's CPU time (user+system, all threads) over wall time, as % of one core; RSS is sampled
every second. With --connections N the dashboard watches the service N times over (N connections, each
getting every snapshot: the load of N such servers on the dashboard), one of them in focus in the window.
With --trace-rss SECONDS the measured part instead lasts SECONDS (e.g. 3600) and samples RSS every
--trace-every seconds to --trace-csv (columns: elapsed_s, rss_mb, cpu_pct; written as it goes, so a cut-short
run keeps its samples); at the end it prints the least-squares slope of RSS in MB/hour over the samples after
--trace-warmup seconds (issue 15: goal flat).
Qt runs offscreen (QT_QPA_PLATFORM=offscreen) unless DISPLAY is set. Settings go to a temp
dir. Prints figures and the goals (<= 15% of one core, <= 300 MB RSS), asserts nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the `desktop` package it measures; run as a script, its folder must not shadow it.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "benchmarks")]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import psutil  # noqa: E402

CPU_GOAL_PCT = 15.0
RSS_GOAL_MB = 300.0
CPU_GOAL_10_PCT = 25.0  # with ten connections (issue 15)
RSS_GOAL_10_MB = 400.0
WARMUP_S = 5.0
REDRAW_REPS = 20
MB = 1024 * 1024


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str, str]:
    cmd = [
        sys.executable,
        "-m",
        "embedded_service.demo",
        "--queues",
        str(args.queues),
        "--gpus",
        str(args.gpus),
        "--snapshot-hz",
        str(args.hz),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"the demo server exited (rc={proc.wait()}) before printing its address")
    info = json.loads(line)
    return proc, info["url"], info["token"]


async def trace_rss(seconds: float, every: float, csv_path: str) -> dict[str, float]:
    """Sample this process's RSS (MB) and CPU (% of one core since the last sample) every `every` seconds for
    `seconds`, appending rows to `csv_path` as they come. Returns the totals of measure() over the whole trace."""
    me = psutil.Process()
    rss: list[float] = []
    psutil.cpu_percent(None)
    c0 = c_prev = sum(me.cpu_times()[:2])
    t0 = t_prev = time.monotonic()
    with open(csv_path, "w", encoding="utf-8") as out:
        out.write("elapsed_s,rss_mb,cpu_pct\n")
        out.flush()
        for i in range(1, max(1, round(seconds / every)) + 1):
            await asyncio.sleep(max(0.0, t0 + i * every - time.monotonic()))
            c, t = sum(me.cpu_times()[:2]), time.monotonic()
            rss.append(me.memory_info().rss / MB)
            out.write(f"{t - t0:.1f},{rss[-1]:.2f},{100 * (c - c_prev) / max(t - t_prev, 1e-9):.2f}\n")
            out.flush()
            c_prev, t_prev = c, t
    return figures(c_prev - c0, t_prev - t0, rss)


def rss_slope(csv_path: str, warmup_s: float) -> tuple[float, int, float, float]:
    """(slope in MB/hour, samples used, first and last RSS in MB) of the trace rows after `warmup_s`."""
    with open(csv_path, encoding="utf-8") as src:
        rows = [tuple(map(float, line.split(",")[:2])) for line in list(src)[1:] if line.strip()]
    kept = [(t, r) for t, r in rows if t >= warmup_s]
    if len(kept) < 2:
        raise SystemExit(f"{csv_path}: fewer than 2 samples after the {warmup_s:g} s warm-up")
    slope, _ = statistics.linear_regression([t for t, _ in kept], [r for _, r in kept])
    return slope * 3600, len(kept), kept[0][1], kept[-1][1]


async def measure(seconds: float, on_tick=None) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """This process's CPU % of one core over `seconds`, RSS sampled each second, machine-wide CPU % meanwhile."""
    me = psutil.Process()
    rss: list[float] = []
    psutil.cpu_percent(None)
    c0, t0 = sum(me.cpu_times()[:2]), time.monotonic()
    end = t0 + seconds
    while (now := time.monotonic()) < end:
        await asyncio.sleep(min(1.0, end - now))
        rss.append(me.memory_info().rss / MB)
        if on_tick is not None:
            on_tick()
    return figures(sum(me.cpu_times()[:2]) - c0, time.monotonic() - t0, rss)


def figures(cpu_s: float, wall_s: float, rss: list[float]) -> dict[str, float]:
    """CPU % of one core, RSS mean and max (MB), and the machine's CPU % since the caller's last reading."""
    return {
        "cpu_pct": 100 * cpu_s / wall_s,
        "wall_s": wall_s,
        "rss_mean": statistics.fmean(rss),
        "rss_max": max(rss),
        "machine_pct": psutil.cpu_percent(None),
    }


def baseline(seconds: float) -> dict[str, float]:
    import qasync
    from PySide6.QtWidgets import QApplication, QMainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = QMainWindow()
    window.resize(1600, 1000)
    window.show()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        result = loop.run_until_complete(measure(seconds))
    window.close()
    window.deleteLater()
    app.processEvents()
    return result


def timings_ms(fn, reps: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def dashboard(args: argparse.Namespace, url: str, server: psutil.Process) -> dict[str, float]:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from desktop.app import build

    _, loop, window = build(["--no-local", *["--connect", url] * args.connections])
    window.resize(1600, 1000)
    out: dict[str, float] = {}

    async def from_qt(fn) -> None:  # type: ignore[no-untyped-def]
        """Run `fn` from a Qt timer, outside any asyncio task: processEvents() inside a task would let
        qasync step another task inside this one (RuntimeError: Cannot enter into task)."""
        done = loop.create_future()

        def call() -> None:
            try:
                fn()
            except BaseException as exc:  # hand it to the awaiting task rather than lose it in Qt
                done.set_exception(exc)
            else:
                done.set_result(None)

        QTimer.singleShot(0, call)
        await done

    async def scenario() -> None:
        running = asyncio.ensure_future(window.run())
        page = await window.first_page_with_data()
        page.show_tab(0)
        counts = {"snapshots": 0, "redraws": 0}
        while sum(p.conn.last_snapshot is not None for p in window.pages.values()) < args.connections:
            await asyncio.sleep(0.1)
        for each in window.pages.values():
            each.conn.snapshot_received.connect(lambda _s: counts.__setitem__("snapshots", counts["snapshots"] + 1))
        overview = page.overview
        real_redraw = overview.redraw

        def counted_redraw() -> None:  # the throttle timer calls self.redraw(), so this sees every redraw
            counts["redraws"] += 1
            real_redraw()

        overview.redraw = counted_redraw  # type: ignore[method-assign]
        await asyncio.sleep(WARMUP_S)
        counts.update(snapshots=0, redraws=0)
        server.cpu_percent(None)
        if args.trace_rss:
            out.update(await trace_rss(args.trace_rss, args.trace_every, args.trace_csv))
        else:
            out.update(await measure(args.seconds))
        out["server_pct"] = server.cpu_percent(None)
        out["snapshots_per_s"] = counts["snapshots"] / out["wall_s"]
        out["redraws_per_s"] = counts["redraws"] / out["wall_s"]
        out["plots"] = len(overview.plot_keys())

        def redraw_and_paint() -> None:
            real_redraw()
            QApplication.processEvents()

        def redraw_timings() -> None:
            out["grab_med"], out["grab_p95"] = timings_ms(window.grab, REDRAW_REPS)
            out["redraw_med"], out["redraw_p95"] = timings_ms(redraw_and_paint, REDRAW_REPS)

        await from_qt(redraw_timings)
        window.close()
        await running

    with loop:
        loop.run_until_complete(scenario())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds of the live dashboard")
    parser.add_argument("--baseline-seconds", type=float, default=10.0, help="measured seconds of the bare Qt window")
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--hz", type=float, default=10.0, help="snapshots per second pushed by the service")
    parser.add_argument("--connections", type=int, default=1, help="connections the dashboard holds to the service")
    parser.add_argument("--trace-rss", type=float, default=0.0, help="instead of --seconds: trace RSS this long (s)")
    parser.add_argument("--trace-every", type=float, default=15.0, help="seconds between RSS samples of the trace")
    parser.add_argument("--trace-warmup", type=float, default=300.0, help="trace seconds left out of the RSS slope")
    parser.add_argument("--trace-csv", default="", help="CSV file the RSS trace is written to (needed with --trace-rss)")
    args = parser.parse_args()
    if args.trace_rss and not args.trace_csv:
        parser.error("--trace-rss needs --trace-csv PATH")
    if args.trace_rss < 0 or args.trace_every <= 0:
        parser.error("--trace-rss must be >= 0 and --trace-every > 0")

    home = tempfile.mkdtemp(prefix="slotdeck-bench-")
    os.environ["SLOTDECK_HOME"] = home
    os.environ["XDG_CONFIG_HOME"] = home
    platform = "xcb (DISPLAY set)" if os.environ.get("DISPLAY") else "offscreen"
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    proc, url, token = start_server(args)
    os.environ["SLOTDECK_TOKEN"] = token
    try:
        base = baseline(args.baseline_seconds)
        dash = dashboard(args, url, psutil.Process(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    print(
        f"qt platform: {os.environ.get('QT_QPA_PLATFORM', platform)}; cpus={psutil.cpu_count()}; "
        f"service: {args.queues} queues, {args.gpus} GPUs, {args.hz:g} Hz snapshots ({url}, own process)"
    )
    print(f"baseline (bare QApplication + qasync + empty 1600x1000 QMainWindow, idle, {base['wall_s']:.0f} s):")
    print(
        f"  cpu {base['cpu_pct']:.2f}% of one core; rss mean {base['rss_mean']:.0f} MB, max {base['rss_max']:.0f} MB; "
        f"whole machine {base['machine_pct']:.0f}% busy (all cores)"
    )
    print(
        f"dashboard ({args.connections} connection(s), Overview tab of one, {dash['plots']:.0f} plots, 1600x1000, "
        f"after {WARMUP_S:g} s warm-up, "
        f"{dash['wall_s']:.0f} s measured):"
    )
    print(f"  snapshots received {dash['snapshots_per_s']:.2f}/s; overview redraws {dash['redraws_per_s']:.2f}/s")
    print(
        f"  cpu {dash['cpu_pct']:.2f}% of one core (this process, all threads); "
        f"minus baseline {dash['cpu_pct'] - base['cpu_pct']:.2f} points; "
        f"over baseline {dash['cpu_pct'] / max(base['cpu_pct'], 0.01):.1f}x"
    )
    print(
        f"  rss mean {dash['rss_mean']:.0f} MB, max {dash['rss_max']:.0f} MB "
        f"(baseline max {base['rss_max']:.0f} MB; +{dash['rss_max'] - base['rss_max']:.0f} MB)"
    )
    print(
        f"  meanwhile: demo service process {dash['server_pct']:.0f}% of one core; "
        f"whole machine {dash['machine_pct']:.0f}% busy (all cores)"
    )
    print(f"full-window redraw ({REDRAW_REPS} reps each):")
    print(
        f"  window.grab() (render whole window to a pixmap): median {dash['grab_med']:.1f} ms, p95 {dash['grab_p95']:.1f} ms"
    )
    print(f"  overview.redraw() + processEvents(): median {dash['redraw_med']:.1f} ms, p95 {dash['redraw_p95']:.1f} ms")
    if args.trace_rss:
        slope, n, first, last = rss_slope(args.trace_csv, args.trace_warmup)
        print(
            f"rss trace ({args.trace_csv}, every {args.trace_every:g} s, {dash['wall_s']:.0f} s): after the "
            f"{args.trace_warmup:g} s warm-up {n} samples, {first:.1f} -> {last:.1f} MB, "
            f"least-squares slope {slope:+.2f} MB/hour"
        )
    cpu_goal, rss_goal = (CPU_GOAL_10_PCT, RSS_GOAL_10_MB) if args.connections >= 10 else (CPU_GOAL_PCT, RSS_GOAL_MB)
    cpu_ok, rss_ok = dash["cpu_pct"] <= cpu_goal, dash["rss_max"] <= rss_goal
    print("goals:")
    print(f"  cpu <= {cpu_goal:g}% of one core: {dash['cpu_pct']:.2f}% -> {'met' if cpu_ok else 'NOT met'}")
    print(f"  rss <= {rss_goal:g} MB (max sample): {dash['rss_max']:.0f} MB -> {'met' if rss_ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
