"""What a reader sees of an index: one commit, whole, until it moves to the next.

A `Snapshot` holds an SQLite read transaction open on the catalogue (WAL mode: writers commit beside it, it
keeps seeing its commit) and the segments that commit names, opened and memory-mapped. It answers the
retrievers' questions in global chunk rows: dense search over every segment's FAISS file of a dim (merged,
deleted rows left out), the full-dim vectors of some rows, and BM25 over every segment's postings with
collection-wide statistics. `LegalSearch` asks `is_current` before each query and opens the next snapshot when
a writer has committed; segments both commits share are reused, not reopened.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

from . import lexical, segments
from .embedding import matryoshka
from .store import DATABASE, catalogue_facts, connect, damaged, layout_of


class Snapshot:
    def __init__(self, path: Path, static: dict, previous: Snapshot | None = None) -> None:
        self.path = path
        database = path / DATABASE
        self.inode = os.stat(database).st_ino
        self.connection = connect(database)
        self.connection.execute("BEGIN")  # the snapshot: this transaction sees one commit until closed
        facts = catalogue_facts(path, self.connection)
        self.manifest = {**static, **facts}
        self.commit = facts["commit"]
        self.layout = layout_of(self.manifest)
        reuse = {s.name: s for _, s in previous.opened} if previous and previous.layout == self.layout else {}
        self.opened: list[tuple[int, segments.Segment]] = []
        for part in facts["segments"]:
            segment = reuse.get(part["name"]) or segments.Segment(path / segments.FOLDER / part["name"], self.layout)
            if segment.rows != part["rows"]:
                raise damaged(segment.folder, f"holds {segment.rows} rows, the catalogue says {part['rows']}")
            segment.prefetch(self.layout.dims)
            self.opened.append((part["base_row"], segment))
        self.size = max((base + s.rows for base, s in self.opened), default=0)
        self.live = self._live_masks()
        self._lexical: lexical.LexicalIndex | None = None
        self._poll: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _live_masks(self) -> list[np.ndarray | None]:
        deleted = np.fromiter((r[0] for r in self.connection.execute("SELECT row FROM deleted")), dtype=np.int64)
        masks: list[np.ndarray | None] = []
        for base, segment in self.opened:
            mine = deleted[(deleted >= base) & (deleted < base + segment.rows)] - base
            if len(mine):
                mask = np.ones(segment.rows, dtype=bool)
                mask[mine] = False
                masks.append(mask)
            else:
                masks.append(None)
        return masks

    def is_current(self) -> bool:
        """Whether no writer has committed (or rewritten the index) since this snapshot was taken."""
        database = self.path / DATABASE
        try:
            if os.stat(database).st_ino != self.inode:
                return False
            with self._lock:
                if self._poll is None:
                    self._poll = connect(database)
                latest = self._poll.execute("SELECT MAX(id) FROM commits").fetchone()[0]
        except (OSError, sqlite3.Error):
            return True  # a rewrite in the middle of its renames: keep answering from this one
        return latest == self.commit

    # --- dense ------------------------------------------------------------------------------------------------
    def search(self, codes: np.ndarray, dim: int, k: int, allowed: np.ndarray | None) -> list[tuple[np.ndarray, ...]]:
        """(global rows, scores) of the best `k` live rows per query at `dim`, best first: every segment's FAISS
        file searched (restricted to `allowed` rows, ascending, when given) and the lists merged."""
        import faiss

        found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(len(codes))]
        for (base, segment), live in zip(self.opened, self.live, strict=True):
            selector = None
            if allowed is not None:
                lo, hi = np.searchsorted(allowed, [base, base + segment.rows])
                if lo == hi:
                    continue
                local = (allowed[lo:hi] - base).astype(np.int64)
                selector = faiss.IDSelectorBatch(local)
            elif live is not None:
                selector = faiss.IDSelectorBatch(np.flatnonzero(live).astype(np.int64))
            index = segment.faiss(dim)
            fetch = min(k, segment.rows)
            if fetch == 0:
                continue
            if selector is None:
                scores, rows = index.search(codes, fetch)
            else:
                params = (
                    faiss.SearchParametersHNSW(sel=selector, efSearch=max(128, fetch))
                    if getattr(index, "hnsw", None) is not None
                    else faiss.SearchParameters(sel=selector)
                )
                scores, rows = index.search(codes, fetch, params=params)
            for q in range(len(codes)):
                keep = rows[q] >= 0
                found[q].append((rows[q][keep].astype(np.int64) + base, scores[q][keep]))
        merged = []
        for lists in found:
            rows = np.concatenate([r for r, _ in lists]) if lists else np.zeros(0, np.int64)
            scores = np.concatenate([s for _, s in lists]) if lists else np.zeros(0, np.float32)
            # best first; ties by row. Hamming distances (binary) rank ascending, similarities descending.
            order = np.lexsort((rows, scores if self.layout.quantize == "binary" else -scores))[:k]
            merged.append((rows[order], scores[order]))
        return merged

    def prefixes(self, rows: np.ndarray, dim: int) -> np.ndarray:
        """Unit prefixes at `dim` (float32) of global `rows`: read from a flat float FAISS file where the dim has
        one (its rows are those prefixes already), else from the float16 vectors."""
        out = np.zeros((len(rows), dim), dtype=np.float32)
        owner = self._owner(rows)
        for i in np.unique(owner):
            base, segment = self.opened[i]
            picked = np.flatnonzero(owner == i)
            local = rows[picked] - base
            view = segment.float_rows(dim) if dim in self.layout.dims and self.layout.quantize == "none" else None
            out[picked] = view[local] if view is not None else matryoshka(np.asarray(segment.vectors[local]), dim)
        return out

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Full-dim vectors (float32) of global `rows`."""
        out = np.zeros((len(rows), self.layout.full_dim), dtype=np.float32)
        owner = self._owner(rows)
        for i in np.unique(owner):
            base, segment = self.opened[i]
            picked = np.flatnonzero(owner == i)
            out[picked] = segment.vectors[rows[picked] - base]
        return out

    def _owner(self, rows: np.ndarray) -> np.ndarray:
        bases = np.array([base for base, _ in self.opened], dtype=np.int64)
        return np.searchsorted(bases, np.asarray(rows, dtype=np.int64), side="right") - 1

    # --- lexical ----------------------------------------------------------------------------------------------
    @property
    def lexical(self) -> lexical.LexicalIndex:
        with self._lock:
            if self._lexical is None:
                parts = [
                    lexical.Part(segment.postings, base, live)
                    for (base, segment), live in zip(self.opened, self.live, strict=True)
                ]
                self._lexical = lexical.LexicalIndex(parts, self.size)
            return self._lexical
