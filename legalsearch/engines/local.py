"""The local engine's reader: one commit of an index folder (`snapshot.Snapshot`: the catalogue's read
transaction and the segments it names) behind `engines.base.Reader`. Chunk keys are global chunk rows, unit keys
`articles.id`; filters become the sorted array of the chunk rows they allow; dense search is FAISS over every
segment, lexical BM25 over every segment's postings with collection-wide statistics."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..catalogue import reads
from ..filters import Filters
from ..matryoshka import matryoshka
from ..snapshot import Snapshot
from ..store import DATABASE, damaged
from .base import Found, Reader, Restriction


class LocalReader(Reader):
    @classmethod
    def latest(cls, path: Path, manifest: Callable[[], dict], previous: LocalReader | None = None) -> LocalReader:
        """The reader of the latest commit (segments shared with `previous` are reused, not reopened)."""
        return cls(Snapshot.latest(path, manifest, previous.snapshot if previous else None))

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.path = snapshot.path
        self.manifest = snapshot.manifest
        self.commit = snapshot.commit
        self.memo = snapshot.memo
        self._owner: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def db(self):
        return self.snapshot.connection

    def is_current(self) -> bool:
        return self.snapshot.is_current()

    @property
    def live(self) -> int:
        return int(self.manifest["counts"]["chunks"])

    @property
    def quantize(self) -> str:
        return self.manifest["faiss"].get("quantize", "none")

    def owner(self) -> np.ndarray:
        """The unit key of every global chunk row (-1: a deleted row)."""
        with self._lock:
            if self._owner is None:
                pairs = reads.chunk_owners(self.db)
                owner = np.full(self.snapshot.size, -1, dtype=np.int64)
                if len(pairs):
                    if pairs[:, 0].min() < 0 or pairs[:, 0].max() >= len(owner):
                        raise damaged(self.path / DATABASE, f"chunk rows outside its segments' {len(owner)} rows")
                    owner[pairs[:, 0]] = pairs[:, 1]
                self._owner = owner
            return self._owner

    def _found(self, chunks: list[tuple[int, float]]) -> list[tuple[int, float, int]]:
        owner = self.owner()
        return [(row, score, int(owner[row])) for row, score in chunks]

    # --- candidates ------------------------------------------------------------------------------------
    def restrict(self, filters: Filters, in_force_only: bool) -> Restriction:
        rows = reads.allowed_rows(self.db, filters)
        return Restriction(filters, len(rows), rows)

    def allows(self, restriction: Restriction | None, chunk: int) -> bool:
        if restriction is None:
            return True
        rows = restriction.native
        i = int(np.searchsorted(rows, chunk))
        return i < len(rows) and int(rows[i]) == chunk

    @staticmethod
    def _rows(restriction: Restriction | None) -> np.ndarray | None:
        return None if restriction is None else restriction.native

    # --- retrieval -------------------------------------------------------------------------------------
    def _dense_chunks(self, vectors: np.ndarray, dim: int, n: int, allowed: np.ndarray | None):
        queries = matryoshka(vectors, dim)
        quantize = self.quantize
        total = len(allowed) if allowed is not None else self.live
        fetch = n if quantize == "none" else min(total, max(4 * n, 200))
        codes = np.packbits(queries > 0, axis=1) if quantize == "binary" else queries
        results = []
        for q, (found, found_scores) in enumerate(self.snapshot.search(codes, dim, fetch, allowed)):
            found_scores = found_scores.astype(np.float64)
            if quantize != "none" and len(found):  # always rescored with the full-precision vectors
                found, found_scores = self._rescore(found, queries[q], dim)
                found, found_scores = found[:n], found_scores[:n]
            results.append(list(zip(found.tolist(), found_scores.tolist(), strict=True)))
        return results

    def _rescore(self, rows: np.ndarray, query: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """`rows` ordered by exact cosine at `dim` with the full-precision vectors, and those cosines. `einsum`,
        not `@`: a BLAS matrix-vector product started right after FAISS's OpenMP threads fought them for the cores
        (3-4× slower on 2 cores, bench/funnel_real.py)."""
        rows = np.sort(rows)  # ascending rows: memory-mapped files are read in order
        unit = query[:dim] / np.linalg.norm(query[:dim])
        exact = np.einsum("ij,j->i", self.snapshot.prefixes(rows, dim), unit.astype(np.float32))
        order = np.lexsort((rows, -exact))
        return rows[order], exact[order].astype(np.float64)

    def dense(self, vectors: np.ndarray, dim: int, n: int, restriction: Restriction | None) -> Found:
        return [self._found(chunks) for chunks in self._dense_chunks(vectors, dim, n, self._rows(restriction))]

    def funnel(self, vectors, dim: int, small: int, shortlist: int, n: int, restriction) -> Found:
        full = matryoshka(vectors, dim)
        results = []
        for q, found in enumerate(self._dense_chunks(vectors, small, max(n, shortlist), self._rows(restriction))):
            rows = np.array([row for row, _ in found], dtype=np.int64)
            ranked, scores = self._rescore(rows, full[q], dim) if len(rows) else (rows, rows)
            results.append(self._found(list(zip(ranked.tolist(), scores.tolist(), strict=True))))
        return results

    def lexical(self, queries: Sequence[str], n: int, restriction, expansions, weight: float) -> Found:
        index = self.snapshot.lexical
        mask = None
        if restriction is not None:
            mask = np.zeros(index.size, dtype=np.float32)
            mask[restriction.native] = 1.0
        return [self._found(chunks) for chunks in index.search(queries, n, mask, expansions, weight)]

    def prefixes(self, chunks: Sequence[int], dim: int) -> np.ndarray:
        return self.snapshot.prefixes(np.asarray(chunks, dtype=np.int64), dim)

    def idf(self, term: str) -> float:
        return self.snapshot.lexical.idf(term)

    # --- what hits show, browsing ----------------------------------------------------------------------
    def units(self, keys):
        return reads.units(self.db, keys)

    def chunks(self, keys):
        return reads.chunks(self.db, keys)

    def unit_chunks(self, boe_id, article_ids):
        return reads.unit_chunks(self.db, boe_id, article_ids)

    def titles(self):
        return reads.titles(self.db)

    def laws(self):
        return reads.laws(self.db)

    def law(self, boe_id):
        return reads.law(self.db, boe_id)

    def units_in_force(self, boe_id):
        return reads.units_in_force(self.db, boe_id)

    def wordings(self, boe_id, article_id):
        return reads.wordings(self.db, boe_id, article_id)

    def has_unit(self, boe_id, article_id):
        return reads.has_unit(self.db, boe_id, article_id)

    def range_units(self, boe_id):
        return reads.range_units(self.db, boe_id)

    def has_earlier_wordings(self, boe_id):
        return reads.has_earlier_wordings(self.db, boe_id)

    def changes(self, since, until, laws):
        return reads.changes(self.db, since, until, laws)

    def article_keys(self):
        return reads.article_keys(self.db)

    def syncs(self):
        return reads.syncs(self.db)
