"""A stand-in for a slow PDF renderer: `render_report.py OUT.pdf TITLE [--seconds S]`.

Writes a small, valid one-page PDF after `--seconds` of "rendering"; exit 0 on success,
2 on bad arguments. SlotDeck runs it as a command job, so its output lands in the job's log.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def pdf(title: str) -> bytes:
    """A minimal PDF 1.4 document with one line of text (cross-reference offsets computed)."""
    text = title.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the PDF file to write")
    parser.add_argument("title", help="the line of text on the page")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long rendering takes (default 2)")
    args = parser.parse_args()
    print(f"rendering {args.title!r} -> {args.out}", flush=True)
    time.sleep(args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(pdf(args.title))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
