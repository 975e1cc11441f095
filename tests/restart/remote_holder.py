"""A remote slot holder for the restart tests: loops `with client.slot(...)` until a stop file appears.

Each body appends `enter <wall time> <fence> <lease id>` and `leave <wall time> <lease id>` to a shared log
with one O_APPEND write per line (atomic between processes), `lost <lease id> <reason>` when the server
told it its lease was gone, and `error <text>` for an exception at `slot()` exit.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from pathlib import Path

from embedded_service.client import Client
from embedded_service.errors import SlotDeckError


def main() -> None:
    url, log_path, stop_path = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else None
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def note(line: str) -> None:
        os.write(fd, (line + "\n").encode())

    rng = random.Random(os.getpid())
    client = Client(url, token, timeout=5.0, poll_s=2.0)
    while not stop_path.exists():
        entered = False
        try:
            with client.slot("default", owner=f"holder-{os.getpid()}", ttl_s=4.0, timeout_s=60) as lease:
                entered = True
                note(f"enter {time.time():.6f} {lease.info.fence} {lease.id}")
                time.sleep(rng.uniform(0.8, 2.5))  # long enough to span a restart
                note(f"leave {time.time():.6f} {lease.id}")
                if lease.lost:
                    note(f"lost {lease.id} {lease.lost}")
        except SlotDeckError as exc:  # before the body: the server is down or restarting, try again
            if entered:  # after the body: slot() exit raised although the work was done
                note(f"error {type(exc).__name__}: {exc}")
            time.sleep(0.2)
        except Exception as exc:  # reported to the test, which fails on it
            note(f"error {type(exc).__name__}: {exc}")
            time.sleep(0.2)
    os.close(fd)


if __name__ == "__main__":
    main()
