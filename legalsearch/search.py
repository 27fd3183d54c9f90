"""Query an index: embed the question, search one Matryoshka dim, roll chunks up to articles, cite them."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .embedding import Encoder, load_encoder, matryoshka
from .errors import IndexFormatError, ModelError, QueryError
from .indexing import same_model
from .store import DATABASE, connect, read_manifest

MAX_QUERY_CHARS = 4000
SEARCH_MODES = ("dense",)


@dataclass
class Hit:
    """One article in a result list. `to_dict()` is the JSON of `ask --json` and of the HTTP API."""

    rank: int
    score: float
    boe_id: str
    law_title: str
    article_id: str
    kind: str
    number: str | None
    heading: str
    path: list[str]
    url: str
    text: str
    matched_text: str  # the chunk that matched best (a part of `text` for long articles), header included
    chunk_part: int

    @property
    def citation(self) -> str:
        """ "Art. 14 · Constitución Española (BOE-A-1978-31229)"."""
        label = f"Art. {self.number}" if self.kind == "articulo" and self.number else self.heading.split(".")[0]
        return f"{label} · {self.law_title.rstrip('.')} ({self.boe_id})"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["citation"] = self.citation
        return data


class LegalSearch:
    """An open index. Cheap to open (FAISS files are memory-mapped, the model loads on the first query) and safe
    to share between threads.

    >>> search = LegalSearch.open("indexes/default")  # doctest: +SKIP
    >>> search.search("¿A qué edad se alcanza la mayoría de edad?", k=3)[0].citation
    'Art. 12 · Constitución Española (BOE-A-1978-31229)'
    """

    def __init__(self, path: Path, manifest: dict, encoder: Encoder | None = None, device: str | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self._encoder = encoder
        self._device = device
        self._faiss: dict[int, object] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    @classmethod
    def open(
        cls, path: str | Path, model: str | None = None, device: str | None = None, encoder: Encoder | None = None
    ) -> LegalSearch:
        """Open the index at `path`. `model`, when given, must be the one the index was built with."""
        path = Path(path)
        manifest = read_manifest(path)
        recorded = manifest["model"]
        wanted = model or (encoder.info.model_id if encoder else None)
        if wanted is not None and not same_model(recorded, wanted):
            raise ModelError(
                f"{path} was built with model {recorded['id']}; it cannot be queried with {wanted} "
                "(vectors of different models are not comparable): drop --model or rebuild the index"
            )
        return cls(path, manifest, encoder, device)

    # --- properties -----------------------------------------------------------------------------------
    @property
    def dims(self) -> list[int]:
        return list(self.manifest["dims"])

    @property
    def default_dim(self) -> int:
        return int(self.manifest.get("defaults", {}).get("dim") or max(self.dims))

    @property
    def encoder(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = load_encoder(self.manifest["model"]["id"], self._device)
                revision = self.manifest["model"].get("revision")
                if revision and self._encoder.info.revision and revision != self._encoder.info.revision:
                    raise ModelError(
                        f"{self.path} was built with revision {revision} of {self.manifest['model']['id']}, "
                        f"but {self._encoder.info.revision} is installed; rebuild the index"
                    )
            return self._encoder

    def _db(self):
        connection = getattr(self._local, "db", None)
        if connection is None:
            connection = self._local.db = connect(self.path / DATABASE)
        return connection

    def _index_for(self, dim: int):
        import faiss

        with self._lock:
            index = self._faiss.get(dim)
            if index is None:
                file = self.path / "faiss" / f"dim-{dim}.faiss"
                try:
                    index = faiss.read_index(str(file), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
                except RuntimeError:
                    try:
                        index = faiss.read_index(str(file))
                    except RuntimeError as exc:
                        raise IndexFormatError(f"{file}: unreadable FAISS index ({exc}); rebuild the index") from None
                if getattr(index, "hnsw", None) is not None:
                    index.hnsw.efSearch = 128
                self._faiss[dim] = index
            return index

    # --- queries --------------------------------------------------------------------------------------
    @staticmethod
    def _check_queries(queries: list[str]) -> None:
        for query in queries:
            if not query or not query.strip():
                raise QueryError("empty query: ask a question, e.g. «¿qué dice la ley sobre la mayoría de edad?»")
            if len(query) > MAX_QUERY_CHARS:
                raise QueryError(f"query too long ({len(query)} characters; at most {MAX_QUERY_CHARS})")

    def _check_dim(self, k: int, dim: int | None) -> int:
        if k <= 0:
            raise QueryError(f"k must be at least 1 (got {k})")
        dim = self.default_dim if dim is None else dim
        if dim not in self.dims:
            raise QueryError(f"dim {dim} was not built for this index; built: {', '.join(map(str, self.dims))}")
        return dim

    def embed(self, queries: list[str]) -> np.ndarray:
        """Full-dim unit vectors of the queries."""
        return self.encoder.encode(queries, batch_size=32)

    def search(self, query: str, k: int = 5, dim: int | None = None, mode: str = "dense") -> list[Hit]:
        """The `k` articles that best answer `query`, best first."""
        return self.search_many([query], k=k, dim=dim, mode=mode)[0]

    def search_many(
        self,
        queries: list[str],
        k: int = 5,
        dim: int | None = None,
        mode: str = "dense",
        vectors: np.ndarray | None = None,
    ) -> list[list[Hit]]:
        """`search` for many queries, encoding them in one batch (or using `vectors`, already embedded)."""
        dim = self._check_dim(k, dim)
        self._check_queries(queries)
        if mode not in SEARCH_MODES:
            raise QueryError(f"unknown mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
        return self.search_vectors(self.embed(queries) if vectors is None else vectors, k=k, dim=dim)

    def search_vectors(self, vectors: np.ndarray, k: int = 5, dim: int | None = None) -> list[list[Hit]]:
        """Search with query vectors already embedded at full dim (for benchmarks and batch evaluation)."""
        dim = self._check_dim(k, dim)
        index = self._index_for(dim)
        total = index.ntotal
        if total == 0:
            return [[] for _ in range(len(vectors))]
        # articles split in several chunks take several slots: ask for more chunks than articles
        fetch = min(total, max(4 * k, k + 32))
        while True:
            scores, rows = index.search(matryoshka(vectors, dim), fetch)
            results = [self._roll_up(s, r, k) for s, r in zip(scores, rows, strict=True)]
            if fetch >= total or all(len(hits) >= k for hits in results):
                return results
            fetch = min(total, fetch * 4)

    def _roll_up(self, scores: np.ndarray, rows: np.ndarray, k: int) -> list[Hit]:
        best: dict[tuple[str, str], tuple[float, int]] = {}
        for score, row in zip(scores, rows, strict=True):
            if row < 0:
                continue
            chunk = self._chunk(int(row))
            key = (chunk["boe_id"], chunk["article_id"])
            if key not in best:
                best[key] = (float(score), int(row))
            if len(best) == k:
                break
        hits = []
        for rank, ((boe_id, article_id), (score, row)) in enumerate(best.items(), 1):
            hits.append(self._hit(rank, score, boe_id, article_id, row))
        return hits

    def _chunk(self, row: int):
        return self._db().execute("SELECT boe_id, article_id, part, text FROM chunks WHERE row = ?", (row,)).fetchone()

    def _hit(self, rank: int, score: float, boe_id: str, article_id: str, row: int) -> Hit:
        db = self._db()
        article = db.execute(
            "SELECT a.*, l.title AS law_title FROM articles a JOIN laws l USING (boe_id) "
            "WHERE a.boe_id = ? AND a.article_id = ?",
            (boe_id, article_id),
        ).fetchone()
        chunk = self._chunk(row)
        return Hit(
            rank=rank,
            score=round(score, 6),
            boe_id=boe_id,
            law_title=article["law_title"],
            article_id=article_id,
            kind=article["kind"],
            number=article["number"],
            heading=article["heading"],
            path=json.loads(article["path"]),
            url=article["url"],
            text=article["text"],
            matched_text=chunk["text"],
            chunk_part=chunk["part"],
        )

    # --- browsing -------------------------------------------------------------------------------------
    def article_keys(self) -> set[str]:
        """ "<boe_id>#<article_id>" of every unit in the index."""
        return {row[0] for row in self._db().execute("SELECT boe_id || '#' || article_id FROM articles")}

    def laws(self) -> list[dict]:
        rows = self._db().execute(
            "SELECT l.*, COUNT(a.id) AS articles FROM laws l LEFT JOIN articles a USING (boe_id) "
            "GROUP BY l.boe_id ORDER BY l.rowid"
        )
        return [dict(row) for row in rows]
