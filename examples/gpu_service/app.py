"""A FastAPI GPU service: short inference calls with a per-GPU cap, and durable training jobs.

    .venv/bin/uvicorn --app-dir examples/gpu_service app:app --port 8000     (one process: see README)

POST /infer              {"prompt": "..."}; ?wait_s= how long to wait for a GPU (<= GPU_SERVICE_INFER_WAIT_S).
                         Runs on one GPU with GPU_SERVICE_INFER_MEM_MIB reserved, at most
                         GPU_SERVICE_INFER_PER_GPU calls per GPU; 503 + Retry-After when the line is full
                         or the wait ran out.
POST /train              {"run": "name", "steps": N, "step_s": S}: a durable command job (train.py) on one GPU
                         with GPU_SERVICE_TRAIN_MEM_MIB reserved; 202 with its job id.
GET  /train/{job_id}     the job's state, attempts, GPUs and the run's progress lines.
GET  /status             per GPU: inference calls running now and the most ever at once (counted here).
/slots/v1/...            SlotDeck's own API (tokens needed): `slotdeck status --url http://HOST:PORT/slots`.

GPUs: NVML's where it finds any; otherwise those declared in GPU_SERVICE_DEVICES (`--device`
syntax, comma-separated; default two 40 GiB "A100"s, so admission behaves as on a 2-GPU box).
Data (SQLite store, job logs, run directories): GPU_SERVICE_DATA (./gpu-service-data).
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from embedded_service import NoFittingDevice, QueueFull, SlotService, SlotTimeout, UnknownJob
from embedded_service.api import router
from embedded_service.config import parse_device
from embedded_service.model import DeviceSpec, Job
from embedded_service.probes import NvmlProbe

DATA = Path(os.environ.get("GPU_SERVICE_DATA", "gpu-service-data")).resolve()
TRAIN_PY = Path(__file__).resolve().with_name("train.py")
INFER_PER_GPU = int(os.environ.get("GPU_SERVICE_INFER_PER_GPU", "2"))
INFER_MEM_MIB = int(os.environ.get("GPU_SERVICE_INFER_MEM_MIB", "8000"))
INFER_S = float(os.environ.get("GPU_SERVICE_INFER_S", "0.5"))
INFER_MAX_WAITING = int(os.environ.get("GPU_SERVICE_INFER_MAX_WAITING", "16"))
INFER_WAIT_S = float(os.environ.get("GPU_SERVICE_INFER_WAIT_S", "30"))
TRAIN_MEM_MIB = int(os.environ.get("GPU_SERVICE_TRAIN_MEM_MIB", "30000"))
DEFAULT_DEVICES = "0:40960:A100,1:40960:A100"


def declared_devices(nvml: NvmlProbe) -> list[DeviceSpec] | None:
    """GPU_SERVICE_DEVICES when set; else none where NVML reads GPUs; else two 40 GiB GPUs."""
    text = os.environ.get("GPU_SERVICE_DEVICES")
    if text is None:
        found, _reason = nvml.sample()
        if found:
            return None
        text = DEFAULT_DEVICES
    return [parse_device(item.strip()) for item in text.split(",") if item.strip()]


DATA.mkdir(mode=0o700, parents=True, exist_ok=True)
(DATA / "runs").mkdir(mode=0o700, exist_ok=True)
nvml = NvmlProbe()
svc = SlotService(store=f"sqlite:///{DATA / 'slotdeck.db'}", devices=declared_devices(nvml), gpu_probe=nvml)
# code's values; an operator's live change (`slotdeck queue set infer --per-gpu 3`) wins and survives restarts
svc.configure_queue("infer", limit=1000, per_gpu=INFER_PER_GPU, max_waiting=INFER_MAX_WAITING, timeout_s=INFER_WAIT_S)
svc.configure_queue("train", limit=100, per_gpu=1)

app = FastAPI(title="GPU service example")
app.include_router(router(svc), prefix="/slots")  # SlotDeck's API; its lifespan starts and drains `svc` with the app


class Running:
    """Inference calls running now on each GPU and the most ever at once: what the per-GPU cap promises."""

    def __init__(self) -> None:
        self.now: Counter[int] = Counter()
        self.peak: Counter[int] = Counter()

    def enter(self, devices: tuple[int, ...]) -> None:
        for d in devices:
            self.now[d] += 1
            self.peak[d] = max(self.peak[d], self.now[d])

    def leave(self, devices: tuple[int, ...]) -> None:
        for d in devices:
            self.now[d] -= 1


running = Running()


def busy(text: str, est_wait_s: float | None) -> JSONResponse:
    retry = max(1, math.ceil(est_wait_s or INFER_S))
    body = {"error": f"{text} Please try again in about {retry} s.", "retry_after_s": retry}
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(retry)})


class Prompt(BaseModel):
    prompt: str = Field(min_length=1, max_length=4000)


async def generate(prompt: str, devices: tuple[int, ...]) -> str:
    await asyncio.sleep(INFER_S)  # the model call, on the GPU(s) in `devices` (NVML indices, PCI bus order)
    return f"{prompt[::-1]} (on GPU {','.join(map(str, devices))})"


@app.post("/infer")
async def infer(body: Prompt, wait_s: Annotated[float, Query(gt=0, le=INFER_WAIT_S)] = INFER_WAIT_S) -> Any:
    asked = time.monotonic()
    try:
        async with svc.slot("infer", owner="infer", gpus=1, gpu_mem_mib=INFER_MEM_MIB, timeout_s=wait_s) as lease:
            waited = time.monotonic() - asked
            running.enter(lease.devices)
            try:
                text = await generate(body.prompt, lease.devices)
            finally:
                running.leave(lease.devices)
    except QueueFull as exc:
        return busy(f"Every GPU is busy and {exc.waiting} calls are already waiting.", exc.est_wait_s)
    except SlotTimeout as exc:
        return busy(f"No GPU came free in {exc.waited_s:.1f} s.", exc.est_wait_s)
    except NoFittingDevice as exc:
        return busy(f"No GPU here can take this call: {exc}.", None)
    return {"text": text, "gpus": list(lease.devices), "waited_s": round(waited, 3)}


class TrainRun(BaseModel):
    run: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="A new run name (its directory).")
    steps: int = Field(ge=1, le=100_000)
    step_s: float = Field(ge=0, le=3600)


@app.post("/train", status_code=202)
async def train(body: TrainRun) -> dict[str, Any]:
    run_dir = DATA / "runs" / body.run
    try:
        run_dir.mkdir(mode=0o700)  # one process serves this data dir, so this claims the name
    except FileExistsError:
        raise HTTPException(409, f"run {body.run!r} exists; pick a new name") from None
    argv = [sys.executable, str(TRAIN_PY), "--run-dir", str(run_dir)]
    argv += ["--steps", str(body.steps), "--step-s", str(body.step_s)]
    # committed to SQLite before this returns; re-run once (from its checkpoint) if the app dies while it runs
    job = await svc.submit_command(argv, queue="train", gpus=1, gpu_mem_mib=TRAIN_MEM_MIB, max_attempts=2, owner="train")
    return {"job_id": job.id, "run": body.run, "state": job.state.value}


def progress(job: Job) -> list[str]:
    """The run's progress lines (train.py writes them), found from the job's own argv."""
    argv = job.argv or []
    run_dir = Path(argv[argv.index("--run-dir") + 1]) if "--run-dir" in argv else None
    try:
        return (run_dir / "progress.log").read_text(encoding="utf-8").splitlines()[-50:] if run_dir else []
    except FileNotFoundError:
        return []


@app.get("/train/{job_id}")
async def train_status(job_id: str) -> dict[str, Any]:
    try:
        job = await svc.get_job(job_id)
    except UnknownJob:
        raise HTTPException(404, f"no training job {job_id!r}") from None
    if job.queue != "train":
        raise HTTPException(404, f"no training job {job_id!r}")
    fields = ("id", "state", "attempts", "max_attempts", "devices", "exit_code", "error")
    return {**job.model_dump(mode="json", include=set(fields)), "progress": progress(job)}


@app.get("/status")
async def status() -> dict[str, Any]:
    snap = svc.snapshot()
    queues = {q.config.name: q for q in snap.queues}
    infer_q = queues["infer"]
    gpus = [
        {
            "index": d.index,
            "name": d.name,
            "source": d.source,
            "memory_total_mib": d.memory_total_mib,
            "memory_reserved_mib": d.memory_reserved_mib,
            "infer_running": running.now[d.index],
            "infer_peak": running.peak[d.index],
        }
        for d in snap.devices
    ]
    return {
        "infer_per_gpu": infer_q.config.per_gpu,
        "infer_in_use": infer_q.in_use,
        "infer_waiting": infer_q.waiting,
        "gpus": gpus,
    }
