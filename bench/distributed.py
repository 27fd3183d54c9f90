"""`index --distributed ray` against the single-process path: same corpus, model and machine.

Builds the index of --sources (default: three laws of ../shared/corpora) with all-MiniLM-L6-v2 three ways, each
into a fresh folder: single process (torch on every core), and local Ray with --workers actors (one CPU each),
once counting the start of Ray and once on an instance already up. Prints wall times, the ratio to the single
process, the fixed overhead Ray adds, and the break-even corpus size where spreading over W machines would pay
(for W = 2, 4, 8, at the single process's rate here).

    python bench/distributed.py [--workers 2] [--sources FILE …]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from common import DEFAULT_SOURCES, Timer, default_model

from legalsearch import indexing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sources", nargs="*", type=Path, default=DEFAULT_SOURCES)
    args = parser.parse_args()
    missing = [s for s in args.sources if not s.exists()]
    if missing:
        sys.exit(f"skipped: {missing[0]} is absent (the corpus lives in ../shared/corpora)")
    import ray

    model = default_model()
    sources = [str(s) for s in args.sources]
    with tempfile.TemporaryDirectory() as folder:
        with Timer() as single:
            report = indexing.build(sources, Path(folder, "single"), model=model)
        chunks = report.chunks
        with Timer() as cold:  # starts and stops a local Ray instance itself
            indexing.build(sources, Path(folder, "cold"), model=model, distributed="ray", workers=args.workers)
        with Timer() as start:
            ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        with Timer() as warm:
            indexing.build(sources, Path(folder, "warm"), model=model, distributed="ray", workers=args.workers)
        ray.shutdown()
    rate = chunks / single.seconds
    overhead = warm.seconds - single.seconds
    print(f"{chunks} chunks, all-MiniLM-L6-v2, {os.cpu_count()} cores, {args.workers} Ray workers")
    print(f"single process        {single.seconds:7.1f} s  1.00×  ({rate:.1f} chunks/s, parse to index)")
    print(f"ray, starting Ray      {cold.seconds:7.1f} s  {cold.seconds / single.seconds:.2f}× the single process")
    ratio = warm.seconds / single.seconds
    print(f"ray, Ray already up    {warm.seconds:7.1f} s  {ratio:.2f}× (ray.init alone {start.seconds:.1f} s)")
    print(f"overhead of Ray here: {overhead:+.1f} s on the same cores (actors load the model, rows travel)")
    for machines in (2, 4, 8):
        if overhead > 0:
            # W machines pay off when N/rate > overhead + N/(W·rate)  ⇔  N > overhead·rate·W/(W−1)
            chunks_even = overhead * rate * machines / (machines - 1)
            print(f"break-even on {machines} machines like this one: ~{chunks_even:,.0f} chunks")


if __name__ == "__main__":
    main()
