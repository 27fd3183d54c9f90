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
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from . import lexical, segments
from .errors import IndexFormatError
from .matryoshka import matryoshka
from .store import DATABASE, catalogue_facts, connect, damaged, gather, layout_of

T = TypeVar("T")
OVERFETCH = 4096  # deleted rows in a segment up to which a search over-fetches instead of using a selector


def _search(index, codes: np.ndarray, k: int, selector):
    import faiss

    if selector is None:
        return index.search(codes, k)
    params = (
        faiss.SearchParametersHNSW(sel=selector, efSearch=max(128, k))
        if getattr(index, "hnsw", None) is not None
        else faiss.SearchParameters(sel=selector)
    )
    return index.search(codes, k, params=params)


def _state(path: Path) -> tuple[int, int] | None:
    """(inode of the catalogue, its last commit) now; None while there is none to read (a rewrite between its
    renames)."""
    database = path / DATABASE
    if not segments.stays_inside(path, DATABASE):
        return (-1, -1)  # a link leading out: never opened (`read_manifest` says the index is damaged)
    try:
        inode = os.stat(database).st_ino
        connection = connect(database)
        try:
            return inode, connection.execute("SELECT MAX(id) FROM commits").fetchone()[0]
        finally:
            connection.close()
    except (OSError, sqlite3.Error):
        return None


def while_moving(path: Path, read: Callable[[], T], attempts: int = 20) -> T:
    """`read()` of the index at `path`, again while a writer moves it meanwhile (a merge that removes the
    segments the commit just read names, a rewrite between its renames): an index that fails to read while no
    writer moves it is damaged, and that error is raised."""
    for attempt in range(attempts):
        before = _state(path)
        try:
            return read()
        except (IndexFormatError, FileNotFoundError):  # a file of the commit it read removed by a writer since
            after = _state(path)
            if attempt == attempts - 1 or (after is not None and after == before):
                raise
        time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


class Snapshot:
    @classmethod
    def latest(cls, path: Path, manifest: Callable[[], dict], previous: Snapshot | None = None) -> Snapshot:
        """The snapshot of the latest commit, opened again if a writer moved the index meanwhile."""
        return while_moving(path, lambda: cls(path, manifest(), previous))

    def __init__(self, path: Path, static: dict, previous: Snapshot | None = None) -> None:
        self.path = path
        self.memo: dict = {}  # what a reader computed from this commit (search.LegalSearch)
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
            segment.hold()
            self.opened.append((part["base_row"], segment))
        self.size = max((base + s.rows for base, s in self.opened), default=0)
        self.live = self._live_masks()
        self._selectors: dict[int, object] = {}  # segment position → FAISS selector of its live rows
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
        file searched (restricted to `allowed` rows, ascending, when given) and the lists merged. A segment with
        a few deleted rows is searched for `k` + that many and the deleted ones dropped (cheaper than a
        selector); with many, through a bitmap of its live rows."""
        found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(len(codes))]
        for position, ((base, segment), live) in enumerate(zip(self.opened, self.live, strict=True)):
            selector, extra = None, 0
            if allowed is not None:
                import faiss

                lo, hi = np.searchsorted(allowed, [base, base + segment.rows])
                if lo == hi:
                    continue
                selector = faiss.IDSelectorBatch((allowed[lo:hi] - base).astype(np.int64))
            elif live is not None:
                extra = segment.rows - int(live.sum())
                if extra > OVERFETCH:
                    selector, extra = self._live_selector(position), 0
            fetch = min(k + extra, segment.rows)
            if fetch == 0:
                continue
            scores, rows = _search(segment.faiss(dim), codes, fetch, selector)
            for q in range(len(codes)):
                keep = rows[q] >= 0
                if extra:
                    keep &= live[np.maximum(rows[q], 0)]
                found[q].append((rows[q][keep].astype(np.int64) + base, scores[q][keep]))
        merged = []
        for lists in found:
            rows = np.concatenate([r for r, _ in lists]) if lists else np.zeros(0, np.int64)
            scores = np.concatenate([s for _, s in lists]) if lists else np.zeros(0, np.float32)
            # best first; ties by row. Hamming distances (binary) rank ascending, similarities descending.
            order = np.lexsort((rows, scores if self.layout.quantize == "binary" else -scores))[:k]
            merged.append((rows[order], scores[order]))
        return merged

    def _live_selector(self, position: int):
        """A FAISS selector of the live rows of one segment (a bitmap, built once per snapshot)."""
        import faiss

        with self._lock:
            selector = self._selectors.get(position)
            if selector is None:
                bits = np.packbits(self.live[position], bitorder="little")
                selector = faiss.IDSelectorBitmap(len(self.live[position]), faiss.swig_ptr(bits))
                selector.bits_array = bits  # keep the bits alive as long as the selector
                self._selectors[position] = selector
            return selector

    def prefixes(self, rows: np.ndarray, dim: int) -> np.ndarray:
        """Unit prefixes at `dim` (float32) of global `rows`: read from a flat float FAISS file where the dim has
        one (its rows are those prefixes already), else from the float16 vectors."""
        out = np.zeros((len(rows), dim), dtype=np.float32)
        for segment, picked, local in segments.by_segment(self.opened, rows):
            view = segment.float_rows(dim)
            out[picked] = view[local] if view is not None else matryoshka(segment.read_rows(local), dim)
        return out

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Full-dim vectors (float32) of global `rows`."""
        return gather(self.opened, rows)

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
