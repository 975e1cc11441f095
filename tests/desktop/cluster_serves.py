"""Real `slotdeck serve --store redis://...` processes for the dashboard's cluster tests and screenshots:
several of them on one (private) Redis form one deployment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cluster"))
from redisproc import free_port

DECLARED_GIB = 16  # the size of each GPU `declare_gpus` declares


class Serve:
    """One `slotdeck serve` on a free loopback port, no tokens, no probes, its data dir under `home`; `env`
    is added to its environment (e.g. `SLOTDECK_HOST_ID`; the caller's `SLOTDECK_*` are not passed)."""

    def __init__(self, store: str, home: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTDECK_", "MAX_CONCURRENT"))}
        argv = ["serve", "--store", store, "--port", str(self.port), "--data-dir", str(home), "--no-auth", "--no-probes"]
        self.log = (home.parent / f"serve-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "embedded_service.cli", *argv, *extra],
            env={**inherited, **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve at {self.url} did not answer within {timeout_s} s")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def start_serves(store: str, root: Path, count: int, *extra: str) -> list[Serve]:
    """`count` serves on `store`, each answering its health check (all stopped again if one does not)."""
    serves: list[Serve] = []
    try:
        for i in range(count):
            (root / f"home{i}").mkdir(parents=True, exist_ok=True)
            serves.append(Serve(store, root / f"home{i}", *extra))
        for serve in serves:
            serve.wait_ready()
    except BaseException:
        for serve in serves:
            serve.stop()
        raise
    return serves


def declare_gpus(home: Path, count: int = 2) -> Path:
    """A serve config declaring `count` GPUs of DECLARED_GIB each (no NVML needed); returns its path."""
    home.mkdir(parents=True, exist_ok=True)
    tables = "".join(
        f'[[server.devices]]\nindex = {i}\nname = "Test GPU {i}"\nmemory_total_mib = {DECLARED_GIB * 1024}\n'
        for i in range(count)
    )
    config = home / "slotdeck.toml"
    config.write_text("[server]\n" + tables)
    return config
