"""Parsing speed per source format over ../shared/corpora: MB/s and units/s, and the ratio of a full parse
to the bare library read of the same bytes (ElementTree / BeautifulSoup+lxml / pypdf text extraction),
measured in the same process.

    python bench/parse.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from bs4 import BeautifulSoup
from pypdf import PdfReader

from legalsearch.sources import detect, parse_bytes

CORPORA = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora"


def bare_read(data: bytes, fmt: str) -> None:
    if fmt.endswith("xml"):
        ET.fromstring(data)
    elif fmt.endswith("html"):
        BeautifulSoup(data, "lxml")
    elif fmt == "pdf":
        for page in PdfReader(io.BytesIO(data)).pages:
            page.extract_text()
    else:
        data.decode("utf-8")


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not (CORPORA / "MANIFEST.tsv").exists():
        print(f"skipped: no corpus at {CORPORA}")
        return 0
    with open(CORPORA / "MANIFEST.tsv", encoding="utf-8") as f:
        files = [CORPORA / row["file"] for row in csv.DictReader(f, delimiter="\t")]
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0, 0])  # bytes, units, parse s, bare s, files
    for path in files:
        data = path.read_bytes()
        fmt = detect(data)
        units = len(parse_bytes(data, str(path)).articles)
        parse_s = best_of(args.repeat, lambda d=data, p=path: parse_bytes(d, str(p)))
        bare_s = best_of(args.repeat, lambda d=data, f=fmt: bare_read(d, f))
        row = totals[fmt]
        row[0] += len(data)
        row[1] += units
        row[2] += parse_s
        row[3] += bare_s
        row[4] += 1
    print(f"{'format':16} {'files':>5} {'MB':>7} {'units':>6} {'MB/s':>7} {'units/s':>8} {'parse/bare read':>16}")
    for fmt, (size, units, parse_s, bare_s, count) in sorted(totals.items()):
        print(
            f"{fmt:16} {count:5d} {size / 1e6:7.2f} {units:6d} {size / 1e6 / parse_s:7.2f} {units / parse_s:8.0f} "
            f"{parse_s / bare_s:15.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
