"""A private redis-server on a free loopback port, for tests and benchmarks that load functions or kill Redis."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """``start()`` / ``kill9()`` / ``start()`` again on the same port and directory.

    ``aof=True`` turns on append-only persistence (fsync always) so a kill -9 keeps the data.
    """

    def __init__(self, workdir: Path, *, aof: bool = False, policy: str = "noeviction", extra: tuple[str, ...] = ()) -> None:
        self.exe = shutil.which("redis-server")
        if self.exe is None:
            raise RuntimeError("redis-server is not installed")
        self.dir = workdir
        self.aof = aof
        self.policy = policy
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, namespace: str) -> str:
        return f"redis://127.0.0.1:{self.port}/0?namespace={namespace}"

    def start(self) -> None:
        args = [
            str(self.exe),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--maxmemory-policy",
            self.policy,
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
        ]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        args += self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_for_pong("redis.log")

    def _wait_for_pong(self, log_name: str) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.exe} exited: {(self.dir / log_name).read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.exe} on port {self.port} did not answer PING within 30 s")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class PrivateSentinel(PrivateRedis):
    """A Redis Sentinel on a free loopback port watching ``master_port`` as ``service`` (quorum 1, down after
    1 s): a failover starts about a second after the master stops answering."""

    def __init__(self, workdir: Path, master_port: int, service: str = "mymaster") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)
        self.service = service
        conf = workdir / "sentinel.conf"  # Sentinel rewrites its config file: it must be its own
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {workdir}\nlogfile sentinel.log\n"
            f"sentinel monitor {service} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {service} 1000\n"
            f"sentinel failover-timeout {service} 5000\n"
        )
        self.conf = conf

    def url(self, namespace: str) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}/0?namespace={namespace}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(self.exe), str(self.conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_for_pong("sentinel.log")
