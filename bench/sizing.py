"""FAISS build time and memory at the scale of all Spanish legislation, for README's sizing table.

Random unit vectors (the build cost of flat, SQ8 and binary indexes does not depend on the values; HNSW's
barely does) at --n rows, for each --dims and each index kind this package builds, with the factories of
`legalsearch.store`. Prints seconds to build and bytes held, and the same per million rows.

    python bench/sizing.py [--n 500000] [--dims 1024,128] [--hnsw-n 100000]
"""

from __future__ import annotations

import argparse

import faiss
import numpy as np
from common import Timer

from legalsearch.embedding import matryoshka
from legalsearch.segments import build_faiss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--hnsw-n", type=int, default=100_000, help="rows for the (slow) HNSW builds")
    parser.add_argument("--dims", default="1024,128")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    full = max(int(d) for d in args.dims.split(","))
    base = rng.standard_normal((args.n, full), dtype=np.float32)
    print(f"{faiss.omp_get_max_threads()} threads; rows: {args.n:,} (HNSW: {args.hnsw_n:,})")
    for dim in (int(d) for d in args.dims.split(",")):
        vectors = matryoshka(base, full)  # build_faiss takes full vectors and cuts the prefix
        for kind, quantize in (("flat", "none"), ("flat", "int8"), ("flat", "binary"), ("hnsw", "none")):
            rows = args.hnsw_n if kind == "hnsw" else args.n
            with Timer() as t:
                index = build_faiss(vectors[:rows], dim, kind, quantize)
            held = faiss.serialize_index_binary(index) if quantize == "binary" else faiss.serialize_index(index)
            per_million = 1e6 / rows
            gb = held.nbytes / 1e9
            print(f"dim {dim:5} {kind:5} {quantize:6} {t.seconds:8.1f} s  {gb:7.3f} GB  "
                  f"per 1M rows: {t.seconds * per_million:8.1f} s  {gb * per_million:7.3f} GB")  # fmt: skip


if __name__ == "__main__":
    main()
