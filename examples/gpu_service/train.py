"""The "training run" the GPU service starts as a SlotDeck command job: one process per run.

    python train.py --run-dir DIR --steps N --step-s S

SlotDeck gives it its GPU in CUDA_VISIBLE_DEVICES (UUIDs on an NVML host, indices for declared
devices) with CUDA_DEVICE_ORDER=PCI_BUS_ID, so a framework started here sees only that card as
`cuda:0`. Each step here is a sleep (no torch, no GPU needed); a real run would train and save a
checkpoint the same way.

It resumes from DIR/checkpoint.json, so a run that a crash interrupted goes on from its last step
when SlotDeck runs it again, and a run that already finished is not trained twice. DIR/progress.log
gets one line when an attempt starts, one per step, and one when the run finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def log(run_dir: Path, line: str) -> None:
    with open(run_dir / "progress.log", "a", encoding="utf-8") as f:
        f.write(line + "\n")
    print(line, flush=True)  # also in the job's log: `slotdeck log JOB_ID`


def load_checkpoint(run_dir: Path) -> dict[str, int | bool]:
    try:
        return dict(json.loads((run_dir / "checkpoint.json").read_text(encoding="utf-8")))
    except FileNotFoundError:
        return {"step": 0, "finished": False}


def save_checkpoint(run_dir: Path, step: int, finished: bool) -> None:
    tmp = run_dir / "checkpoint.json.tmp"
    tmp.write_text(json.dumps({"step": step, "finished": finished}), encoding="utf-8")
    os.replace(tmp, run_dir / "checkpoint.json")  # atomic: a kill leaves the old or the new one, never half


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--step-s", type=float, required=True)
    args = parser.parse_args(argv)
    state = load_checkpoint(args.run_dir)
    if state["finished"]:
        print("already finished; nothing to do", flush=True)
        return 0
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    log(args.run_dir, f"start step={state['step']} gpus={devices} pid={os.getpid()}")
    for step in range(int(state["step"]), args.steps):
        time.sleep(args.step_s)  # one training step on the GPU(s) in CUDA_VISIBLE_DEVICES
        save_checkpoint(args.run_dir, step + 1, finished=False)
        log(args.run_dir, f"step {step + 1}/{args.steps}")
    save_checkpoint(args.run_dir, args.steps, finished=True)
    log(args.run_dir, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
