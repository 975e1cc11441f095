"""A holder process for the fault suite: takes slots in a loop through the proxy and writes what it did,
one JSON line per fact, flushed at once (a kill -9 loses nothing already written).

`python -m tests.faults.worker URL TOKEN QUEUE TTL_S SEED OUT`

Lines: {"kind": "start", "lease", "queue", "fence", "granted_at", "t"} when its body starts,
{"kind": "end", "lease", "t", "lost_at"} when its body stops (lost_at: when the loss was reported, or null),
{"kind": "lost", "lease", "lost_at"} for a loss reported after the body ended; `t` values are time.monotonic().
"""

from __future__ import annotations

import json
import random
import sys
import time

from embedded_service.client import Client
from embedded_service.errors import LeaseLost, SlotDeckError


def main() -> None:
    url, token, queue, ttl_s, seed, out = sys.argv[1:7]
    rng = random.Random(int(seed))
    with open(out, "a", buffering=1) as log, Client(url, token, poll_s=1.0, timeout=3.0) as client:

        def write(**fields: object) -> None:
            log.write(json.dumps(fields) + "\n")

        while True:
            lease = None
            try:
                with client.slot(queue, ttl_s=float(ttl_s), timeout_s=60) as lease:
                    write(
                        kind="start",
                        lease=lease.id,
                        queue=queue,
                        fence=lease.fence,
                        granted_at=lease.granted_at,
                        t=time.monotonic(),
                        margin=lease.margin_s,
                    )
                    until = time.monotonic() + (rng.uniform(0.05, 0.6) if rng.random() < 0.7 else rng.uniform(1.0, 4.0))
                    try:
                        while time.monotonic() < until:
                            lease.check()
                            time.sleep(0.01)
                    finally:
                        write(kind="end", lease=lease.id, t=time.monotonic(), lost_at=lease.lost_at)
            except LeaseLost:
                if lease is not None:
                    write(kind="lost", lease=lease.id, lost_at=lease.lost_at)
            except SlotDeckError as exc:
                write(kind="error", error=f"{type(exc).__name__}: {exc}", t=time.monotonic())
                time.sleep(0.1)


if __name__ == "__main__":
    main()
