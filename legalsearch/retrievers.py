"""Retrievers: each ranks articles for a batch of queries, behind one small interface.

`rank(queries, vectors, depth, allowed)` gives, per query, up to `depth` (unit key, score, best chunk) triples,
best first, over what the `Restriction` `allowed` lets through (None: every live chunk). Each reads a store only
through `engines.base.Reader` (dense, funnel and lexical search are the engine's), so the roll-up of chunks to
their unit (its best chunk) and the fusion are the same on every engine; a retriever asks for more chunks until
each query has `depth` distinct units or the candidates run out.

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

from .engines.base import Reader, Restriction
from .lexicon import expansion

Ranked = list[list[tuple[int, float, int]]]  # per query: (unit key, score, best chunk), best first
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009)
# Agreement gate of the fusion: on the dev questions over all of ../shared/corpora, random query vectors share
# 2.5 % of their 50 best articles with BM25's (at most 10 %), all-MiniLM-L6-v2's vectors 21.5 % (median 20 %).
GATE = (0.05, 0.15)


@dataclass
class View:
    """What retrievers read: one commit of a store (`engines.base.Reader`) and the index's search defaults."""

    reader: Reader
    defaults: dict

    def candidates(self, restriction: Restriction | None) -> int:
        return restriction.count if restriction is not None else self.reader.live

    @staticmethod
    def roll_up(chunks: list[tuple[int, float, int]], depth: int) -> list[tuple[int, float, int]]:
        """(unit key, score, best chunk) of the first `depth` distinct units of a ranked chunk list."""
        seen: dict[int, tuple[float, int]] = {}
        for chunk, score, unit in chunks:
            if unit not in seen:
                seen[unit] = (score, chunk)
                if len(seen) == depth:
                    break
        return [(a, score, chunk) for a, (score, chunk) in seen.items()]

    def until_enough(self, fetch_chunks: Callable[[int], list], depth: int, total: int) -> Ranked:
        """Ask `fetch_chunks(n)` for more chunks until every query has `depth` distinct articles (articles split
        in several chunks take several slots) or the candidates run out."""
        n = min(total, max(4 * depth, depth + 32))
        while True:
            ranked = [self.roll_up(chunks, depth) for chunks in fetch_chunks(n)]
            if n >= total or all(len(r) >= depth for r in ranked):
                return ranked
            n = min(total, n * 4)


class Retriever:
    """Ranks articles for a batch of queries (texts, and their full-dim vectors where the retriever needs them)."""

    def __init__(self, view: View) -> None:
        self.view = view

    def rank(self, queries: list[str], vectors: np.ndarray | None, depth: int, allowed: Restriction | None) -> Ranked:
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
        return self.view.reader.dense(vectors, self.dim, n, allowed)


class Funnel(Retriever):
    def __init__(self, view: View, dim: int, small: int, shortlist: int) -> None:
        super().__init__(view)
        self.dim, self.small, self.shortlist = dim, small, shortlist

    def chunks(self, queries, vectors, n: int, allowed):
        return self.view.reader.funnel(vectors, self.dim, self.small, self.shortlist, n, allowed)


class Lexical(Retriever):
    def __init__(self, view: View, lexicon_weight: float) -> None:
        super().__init__(view)
        self.weight = lexicon_weight

    def chunks(self, queries, vectors, n: int, allowed):
        expansions = [expansion(q) for q in queries] if self.weight > 0 else None
        return self.view.reader.lexical(queries, n, allowed, expansions, self.weight)


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
