"""Matryoshka funnel and quantized indexes against exact full-dim search, at scale.

Real chunk vectors from an index folder (default: a fresh all-MiniLM-L6-v2 index of three laws of
../shared/corpora) are replicated to --n vectors with small Gaussian noise (re-normalised) — the corpus here is
far smaller than 100k chunks, so the scale is synthetic. Queries are the dev questions, embedded, plus perturbed
corpus vectors. Reported, per method: latency per query (batch of all queries, best of --repeat) as a ratio to
exact full-dim search in the same run, recall@10 against exact full-dim search, and index memory.

    python bench/dense.py [--index DIR] [--n 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import faiss
import numpy as np
from common import DEFAULT_SOURCES, DEV, Timer, default_model, dev_questions

from legalsearch import indexing
from legalsearch.embedding import load_encoder, matryoshka
from legalsearch.segments import build_faiss


def replicate(base: np.ndarray, n: int, noise: float, n_queries: int = 140) -> tuple[np.ndarray, np.ndarray]:
    """`n` unit vectors drawn from `base` plus Gaussian noise of norm `noise`, and `n_queries` perturbed ones
    (1.5× the noise) to search with."""
    rng = np.random.default_rng(0)
    full = base.shape[1]
    jitter = rng.normal(size=(n, full)).astype(np.float32)
    jitter *= noise / np.linalg.norm(jitter, axis=1, keepdims=True)
    vectors = matryoshka(base[rng.integers(0, len(base), n)] + jitter, full)
    queries = matryoshka(base[rng.integers(0, len(base), n_queries)] + jitter[:n_queries] * 1.5, full)
    return vectors, queries


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth, strict=True)]))


def best_time(repeat: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        with Timer() as t:
            result = fn()
        best = min(best, t.seconds)
    return best, result


def rescore(candidates: np.ndarray, vectors: np.ndarray, queries: np.ndarray, dim: int, k: int = 10) -> np.ndarray:
    """Re-rank each query's candidate rows by exact cosine at `dim` (the library's rescoring step)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for i, rows in enumerate(candidates):
        rows = rows[rows >= 0]
        exact = matryoshka(vectors[rows], dim) @ queries[i, :dim] / np.linalg.norm(queries[i, :dim])
        out[i] = rows[np.argsort(-exact)[:k]]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.3, help="noise norm relative to the unit vector")
    parser.add_argument("--shortlists", type=int, nargs="+", default=[100, 400, 1000, 2000])
    args = parser.parse_args()
    faiss.omp_set_num_threads(2)
    index = args.index
    if index is None:
        index = Path(tempfile.mkdtemp()) / "idx"
        indexing.build([str(p) for p in DEFAULT_SOURCES], index, model=default_model(), device="cpu")
    manifest = json.loads((index / "manifest.json").read_text())
    base = np.load(index / "vectors.f16.npy", allow_pickle=False).astype(np.float32)
    full = base.shape[1]
    vectors, queries = replicate(base, args.n, args.noise)
    queries = [queries]
    if DEV.exists():
        encoder = load_encoder(manifest["model"]["id"], device="cpu")
        questions = dev_questions()
        queries.insert(0, encoder.encode(questions))
    queries = np.concatenate(queries)
    print(f"{len(base)} real chunk vectors ({manifest['model']['id'].rsplit('/', 1)[-1]}, {full} dims) replicated to "
          f"{args.n} with noise {args.noise}; {len(queries)} queries; best of {args.repeat}")  # fmt: skip

    exact_index = build_faiss(vectors, full, "flat")
    exact_s, (_, truth) = best_time(args.repeat, lambda: exact_index.search(queries, 10))
    rows = [("exact float, full dim", full, exact_s, 1.0, exact_index.ntotal * full * 4)]
    for small in [d for d in manifest["dims"] if d < full and d >= 64]:
        shortlist_index = build_faiss(vectors, small, "flat")
        small_q = matryoshka(queries, small)
        for shortlist in args.shortlists:

            def funnel(idx=shortlist_index, q=small_q, s=shortlist):
                _, candidates = idx.search(q, s)
                return rescore(candidates, vectors, queries, full)

            seconds, found = best_time(args.repeat, funnel)
            memory = shortlist_index.ntotal * small * 4
            rows.append(
                (f"funnel {small}→{full}, shortlist {shortlist}", small, seconds, recall_at_10(found, truth), memory)
            )
    for quantize, oversample in (("int8", 40), ("binary", 100), ("binary", 400)):
        q_index = build_faiss(vectors, full, "flat", quantize)
        codes = np.packbits(queries > 0, axis=1) if quantize == "binary" else queries

        def search(idx=q_index, c=codes, s=oversample):
            _, candidates = idx.search(c, s)
            return rescore(candidates, vectors, queries, full)

        seconds, found = best_time(args.repeat, search)
        memory = q_index.ntotal * (full if quantize == "int8" else full // 8)
        rows.append((f"{quantize}, top {oversample} rescored", full, seconds, recall_at_10(found, truth), memory))
    print(f"{'method':36} {'ms/query':>9} {'vs exact':>9} {'recall@10':>10} {'index MiB':>10}")
    for name, _, seconds, recall, memory in rows:
        print(f"{name:36} {seconds / len(queries) * 1000:9.3f} {seconds / exact_s:8.2f}x {recall:10.4f} "
              f"{memory / 2**20:10.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
