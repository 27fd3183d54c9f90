"""Retrievers: each ranks articles for a batch of queries, behind one small interface.

`rank(queries, vectors, depth, allowed)` gives, per query, up to `depth` (article key, score, best chunk row)
triples, best first, over the chunk rows `allowed` (ascending; None: every live row). Chunks roll up to their
article (its best chunk); a retriever asks its source for more chunks until each query has `depth` distinct
articles or the candidates run out.

* `Dense`: cosine at one Matryoshka dim (FAISS over every segment; quantized storage rescored in float).
* `Funnel`: a shortlist at a small dim, re-ranked by exact cosine at the full dim from the float16 vectors.
* `Lexical`: BM25 with Spanish analysis and collection-wide statistics, plus the lexicon's legal terms.
* `Hybrid`: weighted reciprocal rank fusion of a dense-side retriever and `Lexical`, with the agreement gate;
  its score is the fused one divided by the best possible (0…1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .lexicon import expansion
from .matryoshka import matryoshka
from .snapshot import Snapshot

Ranked = list[list[tuple[int, float, int]]]  # per query: (article key, score, best chunk row), best first
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009)
# Agreement gate of the fusion: on the dev questions over all of ../shared/corpora, random query vectors share
# 2.5 % of their 50 best articles with BM25's (at most 10 %), all-MiniLM-L6-v2's vectors 21.5 % (median 20 %).
GATE = (0.05, 0.15)


@dataclass
class View:
    """What retrievers read of one snapshot: its segments, the article of every chunk row, the defaults."""

    snapshot: Snapshot
    owner: np.ndarray  # article key of every global chunk row (-1: deleted)
    defaults: dict
    quantize: str
    live: int  # live chunk rows

    def candidates(self, allowed: np.ndarray | None) -> int:
        return len(allowed) if allowed is not None else self.live

    def roll_up(self, chunks: list[tuple[int, float]], depth: int) -> list[tuple[int, float, int]]:
        """(article key, score, best chunk row) of the first `depth` distinct articles of a ranked chunk list."""
        seen: dict[int, tuple[float, int]] = {}
        for row, score in chunks:
            article = int(self.owner[row])
            if article not in seen:
                seen[article] = (score, row)
                if len(seen) == depth:
                    break
        return [(a, score, row) for a, (score, row) in seen.items()]

    def until_enough(self, fetch_chunks: Callable[[int], list], depth: int, total: int) -> Ranked:
        """Ask `fetch_chunks(n)` for more chunks until every query has `depth` distinct articles (articles split
        in several chunks take several slots) or the candidates run out."""
        n = min(total, max(4 * depth, depth + 32))
        while True:
            ranked = [self.roll_up(chunks, depth) for chunks in fetch_chunks(n)]
            if n >= total or all(len(r) >= depth for r in ranked):
                return ranked
            n = min(total, n * 4)

    def rescore(self, rows: np.ndarray, query: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """`rows` ordered by exact cosine at `dim` with the full-precision vectors, and those cosines.

        Read from the flat float FAISS file of that dim where there is one (its rows are the re-normalised
        prefixes already), else from the float16 vector files. `einsum`, not `@`: a BLAS matrix-vector product
        started right after FAISS's OpenMP threads fought them for the cores (3-4× slower on 2 cores,
        bench/funnel_real.py)."""
        rows = np.sort(rows)  # ascending rows: memory-mapped files are read in order
        unit = query[:dim] / np.linalg.norm(query[:dim])
        candidates = self.snapshot.prefixes(rows, dim)
        exact = np.einsum("ij,j->i", candidates, unit.astype(np.float32))
        order = np.lexsort((rows, -exact))
        return rows[order], exact[order].astype(np.float64)

    def dense_chunks(self, vectors: np.ndarray, dim: int, n: int, allowed: np.ndarray | None):
        """(row, cosine) of the best `n` chunks per query at `dim`."""
        queries = matryoshka(vectors, dim)
        fetch = n if self.quantize == "none" else min(self.candidates(allowed), max(4 * n, 200))
        codes = np.packbits(queries > 0, axis=1) if self.quantize == "binary" else queries
        results = []
        for q, (found, found_scores) in enumerate(self.snapshot.search(codes, dim, fetch, allowed)):
            found_scores = found_scores.astype(np.float64)
            if self.quantize != "none" and len(found):  # always rescored with the full-precision vectors
                found, found_scores = self.rescore(found, queries[q], dim)
                found, found_scores = found[:n], found_scores[:n]
            results.append(list(zip(found.tolist(), found_scores.tolist(), strict=True)))
        return results


class Retriever:
    """Ranks articles for a batch of queries (texts, and their full-dim vectors where the retriever needs them)."""

    def __init__(self, view: View) -> None:
        self.view = view

    def rank(self, queries: list[str], vectors: np.ndarray | None, depth: int, allowed: np.ndarray | None) -> Ranked:
        total = self.view.candidates(allowed)
        if total == 0:
            return [[] for _ in queries]
        return self.view.until_enough(lambda n: self.chunks(queries, vectors, n, allowed), depth, total)

    def chunks(self, queries, vectors, n: int, allowed) -> list[list[tuple[int, float]]]:
        raise NotImplementedError


class Dense(Retriever):
    def __init__(self, view: View, dim: int) -> None:
        super().__init__(view)
        self.dim = dim

    def chunks(self, queries, vectors, n: int, allowed):
        return self.view.dense_chunks(vectors, self.dim, n, allowed)


class Funnel(Retriever):
    def __init__(self, view: View, dim: int, small: int, shortlist: int) -> None:
        super().__init__(view)
        self.dim, self.small, self.shortlist = dim, small, shortlist

    def chunks(self, queries, vectors, n: int, allowed):
        full = matryoshka(vectors, self.dim)
        results = []
        for q, found in enumerate(self.view.dense_chunks(vectors, self.small, max(n, self.shortlist), allowed)):
            rows = np.array([row for row, _ in found], dtype=np.int64)
            ranked, scores = self.view.rescore(rows, full[q], self.dim) if len(rows) else (rows, rows)
            results.append(list(zip(ranked.tolist(), scores.tolist(), strict=True)))
        return results


class Lexical(Retriever):
    def __init__(self, view: View, lexicon_weight: float) -> None:
        super().__init__(view)
        self.weight = lexicon_weight

    def chunks(self, queries, vectors, n: int, allowed):
        index = self.view.snapshot.lexical
        mask = None
        if allowed is not None:
            mask = np.zeros(index.size, dtype=np.float32)
            mask[allowed] = 1.0
        expansions = [expansion(q) for q in queries] if self.weight > 0 else None
        return index.search(queries, n, mask, expansions, self.weight)


class Hybrid(Retriever):
    """Weighted reciprocal rank fusion of the dense and lexical rankings. The dense side's weight is scaled, per
    query, by how much its 50 best articles agree with the lexical side's (`agreement_weight`): a dense model
    that ranks at random for a question shares next to none of them and drops out of the fusion."""

    def __init__(self, view: View, dense: Retriever, lexical: Retriever) -> None:
        super().__init__(view)
        self.dense, self.lexical = dense, lexical

    def rank(self, queries, vectors, depth: int, allowed) -> Ranked:
        defaults = self.view.defaults
        weights = {"dense": 1.0, "lexical": 1.0, **defaults.get("hybrid_weights", {})}
        gate = defaults.get("agreement_gate", GATE)
        pool = max(depth, 100)  # fuse deep lists: an article ranked 40th by one side can still win
        dense = self.dense.rank(queries, vectors, pool, allowed)
        lexical = self.lexical.rank(queries, vectors, pool, allowed)
        return [fuse(d, lx, weights, gate, depth) for d, lx in zip(dense, lexical, strict=True)]


def fuse(dense: list, lexical: list, weights: dict, gate, depth: int) -> list[tuple[int, float, int]]:
    """RRF of one query's two rankings; a gated dense side still fills the list after BM25's, in its own order.
    Scores are divided by the best a fused score can be (first on every side that ranked anything): 1.0 is an
    article both sides put first, and a score is comparable between queries, in [0, 1]."""
    scores: dict[int, float] = {}
    rows: dict[int, int] = {}
    scale = {"dense": max(agreement_weight(dense, lexical, gate), 1e-3) if lexical else 1.0, "lexical": 1.0}
    best_possible = 0.0
    for name, ranking in (("dense", dense), ("lexical", lexical)):
        if ranking:
            best_possible += weights[name] * scale[name] / (RRF_K + 1)
        for rank, (article, _, row) in enumerate(ranking, 1):
            scores[article] = scores.get(article, 0.0) + weights[name] * scale[name] / (RRF_K + rank)
            rows.setdefault(article, row)
    best = sorted(scores, key=lambda a: -scores[a])[:depth]
    return [(a, scores[a] / best_possible, rows[a]) for a in best]


def agreement_weight(dense: list, lexical: list, gate: tuple[float, float], top: int = 50) -> float:
    """0…1: the share of the dense side's `top` articles the lexical side also has, mapped linearly from
    `gate[0]` (no weight: what a random ranking shares) to `gate[1]` (full weight)."""
    shared = len({a for a, _, _ in dense[:top]} & {a for a, _, _ in lexical[:top]})
    share = shared / top  # of `top`, not of what BM25 found: a few shared matches of a short list prove little
    low, high = gate
    return min(1.0, max(0.0, (share - low) / (high - low))) if high > low else 1.0
