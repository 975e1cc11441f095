"""Submit a batch of report jobs to the `reports` queue with the blocking client.

    submit_batch.py OUT_DIR [--count 8] [--seconds 3]

Server and token: SLOTDECK_URL / SLOTDECK_TOKEN (a `client` token is enough). Prints one job id a line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from embedded_service.client import Client

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory the PDFs go to")
    parser.add_argument("--count", type=int, default=8, help="how many reports (default 8)")
    parser.add_argument("--seconds", type=float, default=3.0, help="rendering time of each (default 3)")
    args = parser.parse_args()
    with Client(os.environ["SLOTDECK_URL"], os.environ.get("SLOTDECK_TOKEN")) as client:
        for i in range(1, args.count + 1):
            pdf = args.out.resolve() / f"report-{i}.pdf"
            argv = [sys.executable, str(HERE / "render_report.py"), str(pdf), f"Quarterly report {i}"]
            argv += ["--seconds", str(args.seconds)]
            job = client.submit_command(argv, queue="reports", max_attempts=2)
            print(job.id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
