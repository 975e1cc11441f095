"""What large request bodies cost the server: its resident memory before and after.

Run: .venv/bin/python benchmarks/bodies.py [--mib 300] [--count 3]

Starts `slotdeck serve` (of the code on PYTHONPATH) in a temporary data
directory and sends `--count` unauthenticated `POST /v1/jobs` whose
Content-Length declares `--mib` MiB, streaming that much over a raw socket,
then one with a chunked body of the same size. Prints the status each got and
the server's RSS before and after. Run it with another checkout on PYTHONPATH
to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil


def send(url: str, head: str, size: int, chunked: bool) -> str:
    parts = urlsplit(url)
    block = b"x" * (1 << 20)
    with socket.create_connection((parts.hostname, parts.port), timeout=120) as sock:
        sock.sendall(head.encode())
        sent = 0
        try:
            while sent < size:
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block)
                sent += len(block)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") + f" (client sent {sent >> 20} MiB)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=300)
    parser.add_argument("--count", type=int, default=3)
    args = parser.parse_args()
    size = args.mib << 20
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "SLOTDECK_HOME": home}
        proc = subprocess.Popen(
            [sys.executable, "-m", "embedded_service.cli", "serve", "--port", "0", "--no-probes", "--log-level", "WARNING"],
            env=env,
        )
        try:
            local = Path(home) / "local.json"
            deadline = time.monotonic() + 30
            while not local.exists():
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.05)
            url = json.loads(local.read_text())["url"]
            server = psutil.Process(proc.pid)
            before = server.memory_info().rss
            host = urlsplit(url).netloc
            head = f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            for n in range(args.count):
                status = send(url, head + f"Content-Length: {size}\r\n\r\n", size, chunked=False)
                print(f"declared {args.mib} MiB #{n + 1}: {status}")
            status = send(url, head + "Transfer-Encoding: chunked\r\n\r\n", size, chunked=True)
            print(f"chunked {args.mib} MiB: {status}")
            after = server.memory_info().rss
            print(f"server RSS {before / 2**20:.0f} MiB -> {after / 2**20:.0f} MiB (+{(after - before) / 2**20:.0f} MiB)")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
