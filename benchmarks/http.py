"""HTTP throughput and latency of SlotDeck's API beside a bare FastAPI endpoint, in one run.

    .venv/bin/python benchmarks/http.py [--seconds 3] [--connections 1,50,500] [--paced 1000,2500,5000,8000,10000]
    .venv/bin/python benchmarks/http.py --part waiters [--waiters 10,1000,10000]
    .venv/bin/python benchmarks/http.py --part compare --no-lean   (every route bound by FastAPI)

Two servers run in their own processes (uvicorn, same settings, uvloop): SlotDeck's app
(memory store, auth on, a bearer token on every request) and a bare FastAPI app
whose endpoints return the same JSON. One load generator (raw asyncio HTTP/1.1
keep-alive connections, in this process) measures both the same way:
  - GET snapshot: requests/s and p50/p99 latency at each connection count;
  - acquire + release round trips (POST then DELETE) per second;
  - GET snapshot at fixed offered rates over 500 connections (open loop): p50/p99
    latency when the server is not saturated.
Ratios are SlotDeck / bare, measured in this run. Prints figures, asserts nothing.

`--part waiters` (also in the default `all`): with 10, 1,000 and 10,000 remote waiters in one
queue's line, the latency of one "still waiting" poll (of the last waiter: the goal is flat),
and remote acquire+release round trips on a free queue beside that line (p50).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the stdlib's `http` package; run as a script, its folder must not shadow it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NO_LEAN_ENV = "SLOTDECK_BENCH_NO_LEAN"


# ------------------------------------------------------------------ servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_slotdeck(port: int, token_file: Path) -> None:
    import uvicorn

    from embedded_service.api import create_app
    from embedded_service.api.auth import create_token
    from embedded_service.api.server import event_loop_factory
    from embedded_service.model import Role
    from embedded_service.service import SlotService

    if os.environ.get(NO_LEAN_ENV):  # --no-lean: every route bound by FastAPI, to measure what @lean saves
        from embedded_service.api import lean

        lean.is_lean = lambda endpoint: False

    async def main() -> None:
        svc = SlotService("memory://")
        await svc.start()
        for name, limit in (("default", 1_000_000), ("chat", 3), ("train", 1), ("render", 8)):
            svc.configure_queue(name, limit=limit, max_waiting=100)
        svc.configure_queue("line", limit=0)  # the waiters part builds its line here
        with contextlib.suppress(ImportError, AttributeError):
            from embedded_service import remote

            remote.POLL_GRACE_S = 3600.0  # the line is built once, not kept alive by polls while measured
        token_file.write_text(await create_token(svc.store, "bench", Role.admin))
        app = create_app(svc, grace_s=0)
        await uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)).serve()

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:  # as `slotdeck serve` runs
        runner.run(main())


def serve_bare(port: int, snapshot_file: Path) -> None:
    import uvicorn
    from fastapi import FastAPI, Response

    snapshot = json.loads(snapshot_file.read_text())
    granted = json.loads(snapshot_file.with_suffix(".lease.json").read_text())
    app = FastAPI()

    @app.get("/v1/snapshot")
    async def snap() -> dict:
        return snapshot

    @app.post("/v1/queues/{queue}/leases", status_code=201)
    async def acquire(queue: str) -> dict:
        return granted

    @app.delete("/v1/leases/{lease_id}", status_code=204, response_class=Response)
    async def release(lease_id: str):  # type: ignore[no-untyped-def]
        return Response(status_code=204)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)  # loop "auto": uvloop


def start(kind: str, port: int, path: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port), str(path)], cwd=ROOT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} server did not start") from None
            time.sleep(0.05)


# ------------------------------------------------------------ load generator


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> bytes:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return await self.reader.readexactly(length) if length else b""


def http_request(method: str, path: str, token: str | None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: keep-alive"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def run_load(port: int, connections: int, seconds: float, work, rate: float | None = None) -> list[float]:  # type: ignore[no-untyped-def]
    """Latencies of `work` on `connections` keep-alive connections for `seconds`.

    Closed loop (rate None): each connection sends its next request as soon as the last is
    answered, so this finds the most a server does; at 500 connections latency is then
    mostly the wait behind the 499 others. Open loop (`rate` requests/s over all
    connections): each connection keeps its own schedule and a request's latency is
    counted from when it was due, so a slow answer also counts the lateness it causes
    (no coordinated omission).
    """
    conns = [Conn(*await asyncio.open_connection("127.0.0.1", port)) for _ in range(connections)]
    latencies: list[float] = []
    start = time.perf_counter() + 0.05
    stop_at = start + seconds
    period = connections / rate if rate else 0.0

    async def loop(index: int, conn: Conn) -> None:
        due = start + period * index / connections
        while due < stop_at:
            if period:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            else:
                due = time.perf_counter()
            await work(conn)
            latencies.append(time.perf_counter() - due)
            due += period

    await asyncio.gather(*(loop(i, c) for i, c in enumerate(conns)))
    for c in conns:
        c.writer.close()
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(
    port: int, token: str | None, connections: int, seconds: float, kind: str, rate: float | None = None
) -> dict[str, float]:
    get = http_request("GET", "/v1/snapshot", token)
    acquire = http_request("POST", "/v1/queues/default/leases", token, b"{}")

    async def snapshot(conn: Conn) -> None:
        await conn.request(get)

    async def round_trip(conn: Conn) -> None:
        lease = json.loads(await conn.request(acquire))["lease"]["id"]
        await conn.request(http_request("DELETE", f"/v1/leases/{lease}", token))

    lat = await run_load(port, connections, seconds, snapshot if kind == "snapshot" else round_trip, rate)
    return {"per_s": len(lat) / seconds, "p50_ms": statistics.median(lat) * 1000, "p99_ms": pct(lat, 0.99)}


def run(coroutine):  # type: ignore[no-untyped-def]
    """The load generator on the same event loop as the servers, so its own cost is as small as theirs."""
    from embedded_service.api.server import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(coroutine)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", default="1,50,500")
    parser.add_argument(
        "--paced",
        default="1000,2500,5000,8000,10000",
        help="open-loop snapshot rates (requests/s) offered over 500 connections",
    )
    parser.add_argument("--part", choices=["all", "compare", "waiters"], default="all")
    parser.add_argument("--waiters", default="10,1000,10000", help="line lengths for the waiters part")
    parser.add_argument("--no-lean", action="store_true", help="serve SlotDeck without @lean route binding")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.no_lean:
        os.environ[NO_LEAN_ENV] = "1"  # read by the server process it starts
    if args.serve:
        kind, port, path = args.serve
        (serve_slotdeck if kind == "slotdeck" else serve_bare)(int(port), Path(path))
        return
    with tempfile.TemporaryDirectory(prefix="slotdeck-bench-") as tmp:
        if args.part in ("all", "compare"):
            compare(Path(tmp), args)
        if args.part in ("all", "waiters"):
            waiters(Path(tmp), args)


async def grow_line(port: int, token: str, count: int) -> str:
    """Add `count` waiters to queue "line" (answered 202 at once); returns the last one's id."""
    body = json.dumps({"wait_s": 0, "ttl_s": 3600, "timeout_s": 86_400}).encode()
    raw = http_request("POST", "/v1/queues/line/leases", token, body)
    last = ""
    connections = min(50, count)
    conns = [Conn(*await asyncio.open_connection("127.0.0.1", port)) for _ in range(connections)]

    async def add(conn: Conn, n: int) -> None:
        nonlocal last
        for _ in range(n):
            last = json.loads(await conn.request(raw))["waiter"]["id"]

    share, extra = divmod(count, connections)
    await asyncio.gather(*(add(c, share + (i < extra)) for i, c in enumerate(conns)))
    for c in conns:
        c.writer.close()
    return last


async def poll_cost(port: int, token: str, waiter_id: str, seconds: float) -> dict[str, float]:
    """Latency of "still waiting" polls (wait_s 0) of one waiter, one connection, back to back."""
    raw = http_request("POST", "/v1/queues/line/leases", token, json.dumps({"wait_s": 0, "waiter_id": waiter_id}).encode())

    async def poll(conn: Conn) -> None:
        answer = json.loads(await conn.request(raw))
        if answer.get("status") != "waiting":
            raise RuntimeError(f"the polled waiter is no longer waiting: {answer}")

    lat = await run_load(port, 1, seconds, poll)
    return {"per_s": len(lat) / seconds, "p50_ms": statistics.median(lat) * 1000, "p99_ms": pct(lat, 0.99)}


def waiters(work: Path, args: argparse.Namespace) -> None:
    """The cost of one waiting poll and of acquire+release beside a line of 10 .. 10,000 waiters."""
    token_file = work / "token-waiters"
    port = _free_port()
    server = start("slotdeck", port, token_file)
    try:
        token = token_file.read_text()
        print(f"waiters: one poll of the last waiter in line, and acquire+release on a free queue; cpus={os.cpu_count()}")
        print(f"{'waiters':>8}{'poll p50 ms':>13}{'poll p99 ms':>13}{'polls/s':>9}{'acq+rel p50 ms':>16}{'acq+rel/s':>11}")
        have = 0
        for target in (int(n) for n in args.waiters.split(",") if n):
            last = run(grow_line(port, token, target - have))
            have = target
            polls = run(poll_cost(port, token, last, args.seconds))
            pair = run(measure(port, token, 1, args.seconds, "acquire+release"))
            print(
                f"{target:>8}{polls['p50_ms']:>13.2f}{polls['p99_ms']:>13.2f}{polls['per_s']:>9.0f}"
                f"{pair['p50_ms']:>16.2f}{pair['per_s']:>11.0f}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(10)


def compare(work: Path, args: argparse.Namespace) -> None:
    """Start both servers, print every measurement, stop them."""
    import httpx

    token_file, snapshot_file = work / "token", work / "snapshot.json"
    sd_port, bare_port = _free_port(), _free_port()
    servers = [start("slotdeck", sd_port, token_file)]
    try:
        token = token_file.read_text()
        with httpx.Client(base_url=f"http://127.0.0.1:{sd_port}", headers={"Authorization": f"Bearer {token}"}) as c:
            held = [
                c.post(f"/v1/queues/{q}/leases", json={"owner": f"user{i}"}).json()
                for i, q in enumerate(["chat", "chat", "render"])
            ]
            snapshot_file.write_text(c.get("/v1/snapshot").text)
            snapshot_file.with_suffix(".lease.json").write_text(json.dumps(held[0]))
            for lease in held:  # the snapshot has them; released, the server stops without revoking anything
                c.delete(f"/v1/leases/{lease['lease']['id']}")
        servers.append(start("bare", bare_port, snapshot_file))
        print(
            f"snapshot JSON: {snapshot_file.stat().st_size} bytes; {args.seconds:.0f} s per measurement; "
            f"cpus={os.cpu_count()}"
        )
        print("closed loop (each connection sends again as soon as it is answered):")
        print(
            f"{'test':<20}{'conns':>6}{'slotdeck/s':>12}{'bare/s':>10}{'ratio':>7}{'p50 ms':>9}{'p99 ms':>9}{'bare p99':>10}"
        )
        closed = [("snapshot", int(n)) for n in args.connections.split(",")]
        for kind, n in [*closed, ("acquire+release", 1), ("acquire+release", 50)]:
            ours = run(measure(sd_port, token, n, args.seconds, kind))
            bare = run(measure(bare_port, None, n, args.seconds, kind))
            print(
                f"{kind:<20}{n:>6}{ours['per_s']:>12.0f}{bare['per_s']:>10.0f}{ours['per_s'] / bare['per_s']:>7.2f}"
                f"{ours['p50_ms']:>9.2f}{ours['p99_ms']:>9.2f}{bare['p99_ms']:>10.2f}",
                flush=True,
            )
        print("open loop (snapshot GETs at a fixed offered rate over 500 connections, latency from when each was due):")
        print(f"{'offered/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'bare p50':>10}{'bare p99':>10}")
        for rate in (float(r) for r in args.paced.split(",") if r):
            ours = run(measure(sd_port, token, 500, args.seconds, "snapshot", rate))
            bare = run(measure(bare_port, None, 500, args.seconds, "snapshot", rate))
            print(
                f"{rate:>10.0f}{ours['p50_ms']:>9.2f}{ours['p99_ms']:>9.2f}{bare['p50_ms']:>10.2f}{bare['p99_ms']:>10.2f}",
                flush=True,
            )
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
