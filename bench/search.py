"""Search latency per Matryoshka dim in a warm process, with and without query encoding, over the questions
of ../shared/eval/dev.jsonl. Builds (or reuses) an index of the given sources first.

    python bench/search.py [--index DIR] [--model DIR] [--repeat 5] [SOURCE …]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import DEFAULT_SOURCES, DEV, Timer, default_model, dev_questions

from legalsearch import indexing
from legalsearch.search import LegalSearch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="*", default=[str(p) for p in DEFAULT_SOURCES])
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    if not DEV.exists():
        print(f"skipped: no {DEV}")
        return 0
    questions = dev_questions()
    index = args.index or Path(tempfile.mkdtemp()) / "idx"
    if not (index / "manifest.json").exists():
        indexing.build(args.sources, index, model=args.model or default_model(), device="cpu")
    search = LegalSearch.open(index)
    vectors = search.embed(questions)  # loads the model, warms up
    for dim in search.dims:
        search.search_vectors(vectors[:2], k=args.k, dim=dim)  # maps the FAISS file
    chunks = search.manifest["counts"]["chunks"]
    print(f"{len(questions)} questions, {chunks} chunks, k={args.k}, best of {args.repeat}")
    print(f"{'dim':>5} {'search ms/q':>12} {'vs full':>8} {'encode+search ms/q':>19} {'batch 60 ms/q':>14}")
    full = None
    for dim in search.dims:
        best_search = best_total = best_batch = float("inf")
        for _ in range(args.repeat):
            with Timer() as t:
                for v in vectors:
                    search.search_vectors(v[np.newaxis], k=args.k, dim=dim)
            best_search = min(best_search, t.seconds / len(questions))
            with Timer() as t:
                for q in questions[:10]:
                    search.search(q, k=args.k, dim=dim)
            best_total = min(best_total, t.seconds / 10)
            with Timer() as t:
                search.search_many(questions, k=args.k, dim=dim)
            best_batch = min(best_batch, t.seconds / len(questions))
        full = full or best_search
        print(
            f"{dim:5d} {best_search * 1000:12.3f} {best_search / full:7.2f}x {best_total * 1000:19.2f} "
            f"{best_batch * 1000:14.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
