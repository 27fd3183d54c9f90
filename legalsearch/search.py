"""Query an index and cite what answers.

Modes: `dense` (cosine at one Matryoshka dim), `funnel` (shortlist at a small dim, re-rank with the full-dim
vectors), `lexical` (BM25 with Spanish analysis) and `hybrid` (reciprocal rank fusion of dense and lexical).
Chunks roll up to articles (an article's best chunk). Filters act before the top-k cut. A query that cites an
article ("artículo 14 CE") gets that article first."""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .citations import find_citation, law_id, named_day, named_law, range_holds, short_name, unit_id
from .dates import check_day
from .documents import law_label
from .embedding import (
    Encoder,
    check_requested_runtime,
    check_runtime,
    load_cross_encoder,
)
from .errors import IndexFormatError, ModelError, QueryError, UsageError
from .filters import KIND_GROUPS, Filters  # noqa: F401 (re-exported)
from .folding import fold
from .indexing import same_model
from .modes import SEARCH_MODES
from .pull import usable_mode
from .query_encoder import load_query_encoder
from .quiet import quiet_third_party
from .ranking import SAMPLE as PRIOR_SAMPLE
from .ranking import Candidate, Priors
from .ranking import apply as apply_priors
from .relevance import GOOD, MARGIN, NONSENSE, dense_evidence, lexical_evidence, probe_vectors, question_words
from .retrievers import Dense, Funnel, Hybrid, Lexical, Retriever, View
from .snapshot import Snapshot, while_moving
from .store import DATABASE, check_files, damaged, read_manifest
from .wordings import Wording, law_url, norma_url, word_diff

MAX_QUERY_CHARS = 4000
MAX_K = 1000
# A unit counts as repealed when the BOE marks it so, when its whole law is repealed, or when the wording in force
# reached its end date (fecha_caducidad) after the index was built. Needs `a` (articles) and `l` (laws).
REPEALED_SQL = (
    "(a.status = 'derogado' OR l.status = 'derogada' "
    "OR (a.wording = '' AND a.version_until IS NOT NULL AND a.version_until <= date('now')))"
)
# The day a unit's wording came into force: its own date, else (a consolidated text without wording dates) the
# law's entry into force or publication: an `as_of` day before the law existed finds none of its units.
IN_FORCE_FROM_SQL = "COALESCE(a.version_date, l.fecha_vigencia, l.fecha_publicacion)"
HYBRID_FUNNEL_ABOVE = 100_000  # chunks; see `retriever`
PRIOR_POOL = 30  # articles each retriever ranks for the priors to reorder


def _checked_manifest(path: Path) -> dict:
    """The manifest of the index at `path`, its files checked (the cheap checks of every open)."""
    manifest = read_manifest(path)
    check_files(path, manifest)
    return manifest


def _index_errors(method):
    """A damaged database met while answering becomes one `IndexFormatError` naming the file, never a raw
    sqlite3 error."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if getattr(self._pinned, "snapshot", None) is not None:  # called from a query: its snapshot already
            return method(self, *args, **kwargs)
        try:
            return self._pinned_query(method, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise IndexFormatError(
                f"{self.path / DATABASE}: unreadable database ({exc}); the index is damaged: rebuild it into a "
                "new --index"
            ) from None

    return wrapper


class NoEarlierWordings(QueryError):
    """A diff asks for a wording the index does not hold: the law was indexed without its earlier wordings."""


class _PerSnapshot:
    """What a reader computes from one commit (the article of each chunk row, filters' rows …), kept on that
    commit's snapshot: a query pinned to a snapshot never reads what was computed for another one."""

    def __init__(self, factory) -> None:
        self.factory = factory

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, search, owner=None):
        if search is None:
            return self
        memo = search._snapshot.memo
        if self.name not in memo:
            memo[self.name] = self.factory()
        return memo[self.name]

    def __set__(self, search, value) -> None:
        search._snapshot.memo[self.name] = value


def cite(unit: dict) -> str:
    """How a lawyer cites a unit (a hit's or `LegalSearch.article`'s fields): "Art. 14 CE · Constitución Española
    (BOE-A-1978-31229)"; a repealed unit adds ", derogado" (with its end date where known); an earlier wording the
    dates it was in force: "…, redacción vigente del 1978-12-29 al 2011-09-27"."""
    number = unit.get("number")
    if unit["kind"] == "articulo" and number:
        label = f"Arts. {number}" if " a " in number else f"Art. {number}"
    else:
        label = unit["heading"].split(".")[0]
    if unit.get("short_name"):
        label += f" {unit['short_name']}"
    cited = f"{label} · {law_label(unit['law_title'], unit['boe_id'])}"
    if unit.get("status") == "derogado":
        cited += f", derogado desde el {unit['version_until']}" if unit.get("version_until") else ", derogado"
    elif unit.get("version_until"):
        cited += f", redacción vigente del {unit['version_date']} al {unit['version_until']}"
    return cited


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
    match: str = "dense"  # how it was found: a search mode, or "cita" when the query cites this article
    version_date: str | None = None  # the wording shown came into force this day (sources with versions)
    version_until: str | None = None  # … and stopped being in force this day (replaced, or expired); None: open
    status: str = "vigente"  # "derogado": the unit (or its whole law) is repealed or expired
    short_name: str | None = None  # the law's usual abbreviation ("ET"), where it has one
    modified_by: str | None = None  # the BOE id of the norm that gave the wording shown, when not the law itself
    consolidated: bool = True  # False: the text as published in the daily BOE, not yet consolidated
    # How well it answers (relevance.py), the same scale in every mode: `score` orders hits of one mode; these
    # say whether a hit is any good. relevance 0…1, good_match from 0.5; no hit with good_match: no good match.
    relevance: float = 0.0
    good_match: bool = False
    cosine: float | None = None  # the question's cosine with the passage that matched (None: not embedded)
    matched_terms: list[str] = field(default_factory=list)  # the question's words the unit's text holds

    @property
    def citation(self) -> str:
        """ "Art. 14 CE · Constitución Española (BOE-A-1978-31229)" (`cite`)."""
        return cite(asdict(self))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["citation"] = self.citation
        return data


class LegalSearch:
    """An open index. Cheap to open (FAISS files are memory-mapped, the model loads on the first query) and safe
    to share between threads.

    >>> search = LegalSearch.open("indexes/default")  # the README's quickstart index (tests/test_readme.py)
    >>> search.search("artículo 12 de la Constitución", k=3)[0].citation
    'Art. 12 CE · Constitución Española (BOE-A-1978-31229)'
    """

    _chunk_article = _PerSnapshot(lambda: None)
    _law_titles = _PerSnapshot(lambda: None)
    _allowed_cache = _PerSnapshot(dict)
    _match_cosine = _PerSnapshot(dict)

    def __init__(
        self,
        path: Path,
        manifest: dict,
        encoder: Encoder | None = None,
        device: str | None = None,
        backend: str | None = None,
        precision: str | None = None,
    ) -> None:
        self.path = path
        self._encoder = encoder
        self._device = device
        self._runtime = (backend, precision)
        self._rerankers: dict[str, object] = {}
        self._lock = threading.RLock()
        self._pinned = threading.local()  # the snapshot the current thread's query reads (`_index_errors`)
        given = [manifest]  # the first attempt opens the manifest given; one more reads the latest
        self._current = Snapshot.latest(path, lambda: given.pop() if given else read_manifest(path))
        self._forget()

    @property
    def _snapshot(self) -> Snapshot:
        """The snapshot this thread's query is pinned to, else the latest one opened."""
        return getattr(self._pinned, "snapshot", None) or self._current

    def _forget(self) -> None:
        """Drop what was computed from the previous snapshot. Each of these is a `_PerSnapshot` attribute (kept on
        the snapshot): a query still reading the previous commit keeps its own."""
        self._chunk_article: np.ndarray | None = None
        self._law_titles: dict[str, str] | None = None
        self._allowed_cache: dict[Filters, np.ndarray] = {}
        self._match_cosine: dict[int, float] = {}

    @property
    def manifest(self) -> dict:
        """The manifest with the catalogue's facts (counts, segments, commit) of the commit this reader serves."""
        return self._snapshot.manifest

    @property
    def commit(self) -> int:
        """The commit this reader serves (`legalsearch info`, `/health`)."""
        return self._snapshot.commit

    def _pinned_query(self, method, *args, **kwargs):
        """Run one query on one commit, whatever other threads' queries move the reader to meanwhile. A file of
        that commit that vanished because a writer moved the index on (a merge removing a folder before the
        snapshot held it) sends the query once more to the next commit; missing while nothing moved, it is an
        error."""
        for attempt in (1, 2):
            self.refresh()
            self._pinned.snapshot = snapshot = self._current
            try:
                return method(self, *args, **kwargs)
            except FileNotFoundError:
                if attempt == 2 or snapshot.is_current():
                    raise
            finally:
                self._pinned.snapshot = None
        raise AssertionError("unreachable")

    def refresh(self) -> bool:
        """Move to the latest commit if a writer made one since (cheap when none did: one stat, one query).
        Whether it moved."""
        if self._current.is_current():
            return False
        with self._lock:
            if self._current.is_current():
                return False
            # the new snapshot checks the files of the segments it opens; those it shares were checked before
            self._current = Snapshot.latest(self.path, lambda: read_manifest(self.path), self._current)
            self._forget()
        return True

    @classmethod
    def open(
        cls,
        path: str | Path,
        model: str | None = None,
        device: str | None = None,
        encoder: Encoder | None = None,
        backend: str | None = None,
        precision: str | None = None,
    ) -> LegalSearch:
        """Open the index at `path`. `model`, when given, must be the one the index was built with. Queries are
        embedded with the index's own runtime (on a GPU, torch fp16 for a float index; on a CPU, torch fp32 for
        an fp16 one) unless `backend` and `precision` ask for another that gives compatible vectors."""
        path = Path(path)
        manifest = while_moving(path, lambda: _checked_manifest(path))
        recorded = manifest["model"]
        wanted = model or (encoder.info.model_id if encoder else None)
        if wanted is not None and not same_model(recorded, wanted):
            raise ModelError(
                f"{path} was built with model {recorded['id']}; it cannot be queried with {wanted} "
                "(vectors of different models are not comparable): drop --model or rebuild the index"
            )
        if encoder is not None:
            check_runtime(recorded, encoder.info, path)
        check_requested_runtime(recorded, backend, precision, path)
        return cls(path, manifest, encoder, device, backend, precision)

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
                recorded = self.manifest["model"]
                backend, precision = self._runtime
                encoder = load_query_encoder(
                    recorded["id"], self._device, backend=backend, precision=precision, match=recorded
                )
                check_runtime(recorded, encoder.info, self.path)
                revision = recorded.get("revision")
                if revision and encoder.info.revision and revision != encoder.info.revision:
                    raise ModelError(
                        f"{self.path} was built with revision {revision} of {recorded['id']}, "
                        f"but {encoder.info.revision} is installed; rebuild the index"
                    )
                self._encoder = encoder
            return self._encoder

    def _db(self):
        return self._snapshot.connection

    # --- queries --------------------------------------------------------------------------------------
    @staticmethod
    def _check_queries(queries: list[str]) -> None:
        for query in queries:
            if not query or not query.strip():
                raise QueryError("empty query: ask a question, e.g. «¿qué dice la ley sobre la mayoría de edad?»")
            if len(query) > MAX_QUERY_CHARS:
                raise QueryError(f"query too long ({len(query)} characters; at most {MAX_QUERY_CHARS})")

    def _check_dim(self, k: int, dim: int | None) -> int:
        if not 1 <= k <= MAX_K:
            raise QueryError(f"k must be between 1 and {MAX_K} (got {k})")
        dim = self.default_dim if dim is None else dim
        if dim not in self.dims:
            raise QueryError(f"dim {dim} was not built for this index; built: {', '.join(map(str, self.dims))}")
        return dim

    def embed(self, queries: list[str]) -> np.ndarray:
        """Full-dim unit vectors of the queries."""
        return self.encoder.encode(queries, batch_size=32)

    @property
    def default_mode(self) -> str:
        return str(self.manifest.get("defaults", {}).get("mode") or "dense")

    def search(
        self,
        query: str,
        k: int = 5,
        dim: int | None = None,
        mode: str | None = None,
        filters: Filters | None = None,
        shortlist: int | None = None,
        **ranking,
    ) -> list[Hit]:
        """The `k` articles that best answer `query`, best first.

        `mode` is one of `SEARCH_MODES` (default: the index's); `filters` restrict the candidates before the
        cut; `shortlist` is the funnel's number of candidates at the small dim; `ranking` takes `search_many`'s
        `priors`, `rerank` and `rerank_depth`."""
        return self.search_many([query], k=k, dim=dim, mode=mode, filters=filters, shortlist=shortlist, **ranking)[0]

    @_index_errors
    def search_many(
        self,
        queries: list[str],
        k: int = 5,
        dim: int | None = None,
        mode: str | None = None,
        filters: Filters | None = None,
        shortlist: int | None = None,
        vectors: np.ndarray | None = None,
        priors: Priors | None = None,
        rerank: str | None = None,
        rerank_depth: int = 20,
    ) -> list[list[Hit]]:
        """`search` for many queries, encoding them in one batch (or using `vectors`, already embedded).
        `priors` replace the index's for this search; `rerank` (a CrossEncoder: hub id or folder) rescores the
        first `rerank_depth` hits."""
        mode = usable_mode(self, mode)  # a pulled index: dense modes only with the publisher's model
        mode = mode or self.default_mode
        if mode not in SEARCH_MODES:
            raise QueryError(f"unknown mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
        dim = self._check_dim(k, dim)
        self._check_queries(queries)
        options = {"shortlist": shortlist, "priors": priors, "rerank": rerank, "rerank_depth": rerank_depth}
        if self.has_history and (filters is None or filters.as_of is None) and self.time_detection:
            dated = [named_day(q) for q in queries]  # "en 2010": the wordings in force then
            if any(dated):
                return self._by_day(queries, dated, k, dim, mode, filters or Filters(), vectors, options)
        priors = priors or self.priors
        allowed = self._allowed(filters)
        if allowed is not None and len(allowed) == 0:
            return [[] for _ in queries]
        if mode != "lexical" and vectors is None:
            vectors = self.embed(queries)
        keep = max(k, rerank_depth if rerank else 0)  # hits built: the reranker rescores its depth
        depth = max(keep, PRIOR_POOL if priors.active else 0)  # articles ranked: the priors reorder a pool
        ranked = self.retriever(mode, dim, shortlist).rank(queries, vectors, depth, allowed)
        results = [
            self._hits(query, self._with_priors(query, articles, priors), keep, mode, allowed)
            for query, articles in zip(queries, ranked, strict=True)
        ]
        self._judge(queries, vectors, dim, results)
        if rerank:
            results = [
                self._reranked(query, hits, rerank, rerank_depth)[:k]
                for query, hits in zip(queries, results, strict=True)
            ]
        return results

    def _reranked(self, query: str, hits: list[Hit], model: str, depth: int) -> list[Hit]:
        """The first `depth` hits ordered by a cross-encoder's score of (question, text), which becomes their
        `score`; a cited article stays first; the hits after `depth` keep their order."""
        with self._lock:
            reranker = self._rerankers.get(model)
            if reranker is None:
                reranker = self._rerankers[model] = load_cross_encoder(model, self._device)
        fixed = hits[:1] if hits and hits[0].match == "cita" else []
        head, tail = hits[len(fixed) : depth], hits[depth:]
        if head:
            with quiet_third_party():
                scores = reranker.predict([(query, hit.matched_text) for hit in head], show_progress_bar=False)
            scores = np.asarray(scores, dtype=np.float64)
            if scores.shape != (len(head),):
                raise ModelError(f"reranker {model} gives {scores.shape[1:]} scores per pair; a reranker gives one")
            for hit, score in zip(head, scores, strict=True):
                hit.score = round(float(score), 6)
            head = sorted(head, key=lambda hit: -hit.score)
        ordered = fixed + head + tail
        for rank, hit in enumerate(ordered, 1):
            hit.rank = rank
        return ordered

    @property
    def time_detection(self) -> bool:
        """Whether a question that names a year ("en 2010", "antes de la reforma de 2011") searches the wordings
        of that time, where the index holds them (manifest `defaults.time_detection`, on by default)."""
        return bool(self.manifest.get("defaults", {}).get("time_detection", True))

    def _by_day(self, queries, days, k, dim, mode, filters: Filters, vectors, options) -> list[list[Hit]]:
        """`search_many` for queries grouped by the day each names (None: the wordings in force)."""
        results: list[list[Hit]] = [[] for _ in queries]
        for day in dict.fromkeys(days):
            picked = [i for i, d in enumerate(days) if d == day]
            found = self.search_many(
                [queries[i] for i in picked], k=k, dim=dim, mode=mode, filters=replace(filters, as_of=day),
                vectors=None if vectors is None else vectors[picked], **options,
            )  # fmt: skip
            for i, hits in zip(picked, found, strict=True):
                results[i] = hits
        return results

    @property
    def priors(self) -> Priors:
        """The legal priors of this index (manifest `defaults.priors`; `ranking.Priors` for what each does)."""
        return Priors.from_dict(self.manifest.get("defaults", {}).get("priors"))

    def _with_priors(self, query: str, ranked: list[tuple[int, float, int]], priors: Priors):
        """A retriever's (article, score, row) list reordered by the priors."""
        if not priors.active or not ranked:
            return ranked
        rows = self._db().execute(
            f"SELECT a.id, a.kind, a.boe_id, l.rango, {REPEALED_SQL} AS repealed, "
            f"substr(a.text, 1, {PRIOR_SAMPLE}) AS text FROM articles a "
            f"JOIN laws l USING (boe_id) WHERE a.id IN ({', '.join('?' * len(ranked))})",
            [article for article, _, _ in ranked],
        )
        meta = {row[0]: row for row in rows}
        candidates = [
            Candidate(article, score, row, meta[article]["kind"], meta[article]["boe_id"], meta[article]["rango"],
                      bool(meta[article]["repealed"]), meta[article]["text"])
            for article, score, row in ranked
        ]  # fmt: skip
        named = named_law(query, self._titles()) if priors.law_boost != 1.0 else None
        return [(c.article, c.score, c.row) for c in apply_priors(candidates, priors, query, named)]

    @_index_errors
    def search_vectors(self, vectors: np.ndarray, k: int = 5, dim: int | None = None) -> list[list[Hit]]:
        """Dense search with query vectors already embedded at full dim (benchmarks, batch evaluation)."""
        dim = self._check_dim(k, dim)
        ranked = self.retriever("dense", dim).rank(["" for _ in vectors], vectors, k, self._allowed(None))
        results = [
            [self._hit(r, score, a, row, "dense") for r, (a, score, row) in enumerate(found, 1)] for found in ranked
        ]
        self._judge(["" for _ in vectors], vectors, dim, results)
        return results

    # --- candidates -----------------------------------------------------------------------------------
    def _chunk_articles(self) -> np.ndarray:
        """Article key (articles.id) of every global chunk row (-1: a deleted row)."""
        with self._lock:
            if self._chunk_article is None:
                pairs = (
                    self._db()
                    .execute("SELECT c.row, a.id FROM chunks c JOIN articles a USING (boe_id, article_id, wording)")
                    .fetchall()
                )
                owner = np.full(self._snapshot.size, -1, dtype=np.int64)
                if pairs:
                    both = np.array(pairs, dtype=np.int64)
                    if both[:, 0].min() < 0 or both[:, 0].max() >= len(owner):
                        raise damaged(self.path / DATABASE, f"chunk rows outside its segments' {len(owner)} rows")
                    owner[both[:, 0]] = both[:, 1]
                self._chunk_article = owner
            return self._chunk_article

    def _view(self) -> View:
        return View(self._snapshot, self._chunk_articles(), self.manifest.get("defaults", {}),
                    self.manifest["faiss"].get("quantize", "none"), int(self.manifest["counts"]["chunks"]))  # fmt: skip

    def funnel_dim(self, dim: int) -> int:
        """The dim the funnel shortlists at: the manifest's choice, else the smallest built dim >= 64 below `dim`."""
        chosen = self.manifest.get("defaults", {}).get("funnel_dim")
        if chosen in self.dims and chosen <= dim:
            return int(chosen)
        smaller = [d for d in self.dims if d < dim]
        return min([d for d in smaller if d >= 64] or smaller or [dim])

    @property
    def lexicon_weight(self) -> float:
        """How much the legal terms of the lexicon (`lexicon.expansion`) count in BM25, against the query's own
        words (manifest `defaults.lexicon_weight`; 0: no expansion)."""
        return float(self.manifest.get("defaults", {}).get("lexicon_weight") or 0.0)

    def retriever(self, mode: str, dim: int, shortlist: int | None = None) -> Retriever:
        """The retriever of `mode` at `dim` over the snapshot this reader serves."""
        view = self._view()
        if mode == "dense":
            return Dense(view, dim)
        if mode == "funnel":
            default = int(self.manifest.get("defaults", {}).get("funnel_shortlist") or 1000)
            return Funnel(view, dim, self.funnel_dim(dim), shortlist or default)
        if mode == "lexical":
            return Lexical(view, self.lexicon_weight)
        # past `hybrid_funnel_above` chunks the dense side shortlists with the funnel: an exact scan of half a
        # million 1024-dim vectors takes ~50 ms on 2 cores, the funnel ~19 ms (bench/scale.py)
        above = self.manifest.get("defaults", {}).get("hybrid_funnel_above", HYBRID_FUNNEL_ABOVE)
        dense_mode = "funnel" if above is not None and view.live > above else "dense"
        return Hybrid(view, self.retriever(dense_mode, dim, shortlist), self.retriever("lexical", dim))

    # --- filters and citations ------------------------------------------------------------------------
    @property
    def has_history(self) -> bool:
        """Whether the index holds earlier wordings of its units (built with `--history`)."""
        return bool(self.manifest["counts"].get("earlier_wordings"))

    def _allowed(self, filters: Filters | None) -> np.ndarray | None:
        """The chunk rows a search may return (ascending), or None for all. An index with earlier wordings
        always restricts: to the wordings in force, or to those in force on the filters' date."""
        filters = filters or Filters()
        if not filters.active and not self.has_history:
            return None
        with self._lock:
            allowed = self._allowed_cache.get(filters)
        if allowed is None:
            allowed = self._allowed_rows(filters)
            with self._lock:
                if len(self._allowed_cache) >= 16:
                    self._allowed_cache.clear()
                self._allowed_cache[filters] = allowed
        return allowed

    def _allowed_rows(self, filters: Filters) -> np.ndarray:
        db = self._db()
        where, args = [], []
        if filters.laws:
            known = {r[0] for r in db.execute("SELECT boe_id FROM laws")}
            unknown = [b for b in filters.laws if b not in known]
            if unknown:
                listed = ", ".join(sorted(known)[:12]) + (" …" if len(known) > 12 else "")
                raise QueryError(f"law {_some(unknown)} is not in this index; it holds {listed}")
            where.append(f"l.boe_id IN ({', '.join('?' * len(filters.laws))})")
            args += filters.laws
        if filters.rangos:
            rangos = {r[0] for r in db.execute("SELECT DISTINCT rango FROM laws WHERE rango IS NOT NULL")}
            by_fold = {fold(r): r for r in rangos}
            unknown = [r for r in filters.rangos if fold(r) not in by_fold]
            if unknown:
                raise QueryError(f"rango {_some(unknown)} not in this index; choose among {', '.join(sorted(rangos))}")
            where.append(f"l.rango IN ({', '.join('?' * len(filters.rangos))})")
            args += [by_fold[fold(r)] for r in filters.rangos]
        if filters.materias:
            materias = {r[0] for r in db.execute("SELECT DISTINCT m.value FROM laws, json_each(laws.materias) m")}
            by_fold = {fold(m): m for m in materias}
            unknown = [m for m in filters.materias if fold(m) not in by_fold]
            if unknown:
                known = ", ".join(sorted(materias)[:12]) + (" …" if len(materias) > 12 else "") or "none"
                raise QueryError(f"materia {_some(unknown)} not in this index; it holds {known}")
            chosen = [by_fold[fold(m)] for m in filters.materias]
            where.append(
                f"EXISTS (SELECT 1 FROM json_each(l.materias) m WHERE m.value IN ({', '.join('?' * len(chosen))}))"
            )
            args += chosen
        kinds = filters.unit_kinds()
        if kinds:
            where.append(f"a.kind IN ({', '.join('?' * len(kinds))})")
            args += kinds
        if filters.vigentes:
            where.append(f"NOT {REPEALED_SQL}")
        if filters.as_of:
            _check_date(filters.as_of)
            where.append(
                f"({IN_FORCE_FROM_SQL} IS NULL OR {IN_FORCE_FROM_SQL} <= ?) "
                "AND (a.version_until IS NULL OR ? < a.version_until)"
            )
            args += [filters.as_of, filters.as_of]
        else:
            where.append("a.wording = ''")
        rows = db.execute(
            "SELECT c.row FROM chunks c JOIN articles a USING (boe_id, article_id, wording) JOIN laws l USING (boe_id) "
            f"WHERE {' AND '.join(where) or '1'} ORDER BY c.row",
            args,
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def _titles(self) -> dict[str, str]:
        with self._lock:
            if self._law_titles is None:
                self._law_titles = {r[0]: r[1] for r in self._db().execute("SELECT boe_id, title FROM laws")}
            return self._law_titles

    def _cited(self, query: str, allowed: np.ndarray | None) -> tuple[int, int] | None:
        """(article key, best chunk row) of the article the query cites, if it is in the index and allowed."""
        citation = find_citation(query, self._titles())
        if citation is None:
            return None
        rows = (
            self._db()
            .execute(
                "SELECT a.id, c.row FROM articles a JOIN chunks c USING (boe_id, article_id, wording) "
                "WHERE a.boe_id = ? AND a.article_id = ? ORDER BY a.wording != '', c.row",
                (citation.boe_id, citation.article_id),
            )
            .fetchall()
        )
        if not rows:  # "artículo 128 CC" lies in the unit "Artículos 127 a 130. (Derogados)"
            rows = [
                (article, row)
                for article, range_id, row in self._db().execute(
                    "SELECT a.id, a.article_id, c.row FROM articles a "
                    "JOIN chunks c USING (boe_id, article_id, wording) "
                    "WHERE a.boe_id = ? AND a.kind = 'articulo' AND a.article_id LIKE 'a%-a%' "
                    "ORDER BY a.wording != '', c.row",
                    (citation.boe_id,),
                )
                if range_holds(range_id, citation.article_id)
            ]
        for article, row in rows:  # the wording in force first; with a date, the one the filters allow
            if allowed is None or _contains(allowed, row):
                return int(article), int(row)
        return None

    def _cited_key(self, hit: Hit) -> int:
        """The article key of a hit (for tests and tools that map hits back to chunk rows)."""
        row = (
            self._db()
            .execute(
                "SELECT id FROM articles WHERE boe_id = ? AND article_id = ? AND version_date IS ?",
                (hit.boe_id, hit.article_id, hit.version_date),
            )
            .fetchone()
        )
        return int(row[0])

    def _chunk_rows_of(self, article: int) -> np.ndarray:
        return np.flatnonzero(self._chunk_articles() == article)

    def _hits(self, query: str, ranked, k: int, mode: str, allowed) -> list[Hit]:
        cited = self._cited(query, allowed)
        hits: list[Hit] = []
        if cited is not None:
            hits.append(self._hit(1, 1.0, cited[0], cited[1], "cita"))
        for article, score, row in ranked:
            if len(hits) == k:
                break
            if cited is not None and article == cited[0]:
                continue
            hits.append(self._hit(len(hits) + 1, score, article, row, mode))
        return hits

    def _judge(self, queries: list[str], vectors: np.ndarray | None, dim: int, results: list[list[Hit]]) -> None:
        """Set each hit's cosine, matched words, relevance and good_match (`relevance.py`)."""
        threshold = self.match_cosine(dim) if vectors is not None else None
        lexical = self._snapshot.lexical
        for q, (query, hits) in enumerate(zip(queries, results, strict=True)):
            if not hits:
                continue
            cosines: list[float | None] = [None] * len(hits)
            if vectors is not None:
                rows = np.array([hit._row for hit in hits], dtype=np.int64)
                unit = vectors[q, :dim] / np.linalg.norm(vectors[q, :dim])
                cosines = [float(c) for c in self._snapshot.prefixes(rows, dim) @ unit.astype(np.float32)]
            words = question_words(query, lexical.idf)
            for hit, cosine in zip(hits, cosines, strict=True):
                share, matched = lexical_evidence(words, hit.text)
                hit.cosine = None if cosine is None else round(cosine, 6)
                hit.matched_terms = matched
                hit.relevance = 1.0 if hit.match == "cita" else round(max(share, dense_evidence(cosine, threshold)), 4)
                hit.good_match = hit.relevance >= GOOD

    def match_cosine(self, dim: int) -> float:
        """The cosine at `dim` from which the dense side counts as evidence of a match (`relevance.py`): the
        manifest's `defaults.match_cosine` (a number, or one per dim) where it was measured for the model, else
        the best cosine the `NONSENSE` strings reach in this index plus `MARGIN` (once per commit; their vectors
        are cached per model, `relevance.probe_vectors`)."""
        recorded = self.manifest.get("defaults", {}).get("match_cosine")
        if isinstance(recorded, dict):
            recorded = recorded.get(str(dim))
        if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
            return float(recorded)
        with self._lock:
            if dim not in self._match_cosine:
                probes = probe_vectors(self.encoder)
                ranked = self.retriever("dense", dim).rank(list(NONSENSE), probes, 1, self._allowed(None))
                floor = max((found[0][1] for found in ranked if found), default=1.0)
                self._match_cosine[dim] = float(floor) + MARGIN
            return self._match_cosine[dim]

    def _hit(self, rank: int, score: float, article: int, row: int, match: str) -> Hit:
        db = self._db()
        a = db.execute(
            f"SELECT a.*, l.title AS law_title, l.source_format, {REPEALED_SQL} AS repealed "
            "FROM articles a JOIN laws l "
            "USING (boe_id) WHERE a.id = ?",
            (article,),
        ).fetchone()
        chunk = db.execute("SELECT part, text FROM chunks WHERE row = ?", (row,)).fetchone()
        hit = Hit(
            rank=rank,
            score=round(float(score), 6),
            boe_id=a["boe_id"],
            law_title=a["law_title"],
            article_id=a["article_id"],
            kind=a["kind"],
            number=a["number"],
            heading=a["heading"],
            path=json.loads(a["path"]),
            url=a["url"],
            text=a["text"],
            matched_text=chunk["text"],
            chunk_part=chunk["part"],
            match=match,
            version_date=a["version_date"],
            version_until=a["version_until"],
            status="derogado" if a["repealed"] else "vigente",
            short_name=short_name(a["boe_id"]),
            modified_by=a["version_norma"] if a["version_norma"] not in (None, a["boe_id"]) else None,
            consolidated=a["source_format"] != "boe-diario-xml",
        )
        hit._row = row  # the chunk that matched: its vector gives the hit's cosine (`_judge`)
        return hit

    # --- browsing -------------------------------------------------------------------------------------
    @_index_errors
    def article_keys(self) -> set[str]:
        """ "<boe_id>#<article_id>" of every unit in the index."""
        return {row[0] for row in self._db().execute("SELECT boe_id || '#' || article_id FROM articles")}

    @_index_errors
    def law(self, boe_id: str) -> dict | None:
        """A law's metadata and the list of its units (no texts), or None. `boe_id` may be the law's short name
        or number ("ET", "Ley 29/1994"), as for `article`."""
        db = self._db()
        boe_id = law_id(boe_id, self._titles()) or boe_id
        row = db.execute("SELECT * FROM laws WHERE boe_id = ?", (boe_id,)).fetchone()
        if row is None:
            return None
        units = db.execute(
            "SELECT article_id, kind, number, heading, path, url FROM articles WHERE boe_id = ? AND wording = '' "
            "ORDER BY position",
            (boe_id,),
        )
        law = dict(row)
        for name in ("materias", "referencias"):
            law[name] = json.loads(law[name])
        law["units"] = [{**dict(u), "path": json.loads(u["path"])} for u in units]
        return law

    @_index_errors
    def article(self, boe_id: str, article_id: str, as_of: str | None = None) -> dict | None:
        """One unit with its text, notes and version dates, or None: the wording in force, or with `as_of` the
        one in force that day (None if it did not exist yet). `wordings` lists every wording the index holds of
        it, oldest first (dates and links).

        Both take what a lawyer types (`unit`): `article("ET", "56")`, `article("BOE-A-2015-11430", "art. 56")`,
        `article("CC", "artículo 128")` (a unit covering a range of articles answers for each of them)."""
        if as_of is not None:
            _check_date(as_of)
        boe_id, article_id = self.unit(boe_id, article_id)
        rows = (
            self._db()
            .execute(
                f"SELECT a.*, l.title AS law_title, l.source_format, {REPEALED_SQL} AS repealed, "
                f"{IN_FORCE_FROM_SQL} AS in_force_from FROM articles a JOIN laws l "
                "USING (boe_id) WHERE a.boe_id = ? AND a.article_id = ? "
                "ORDER BY a.version_date IS NOT NULL, a.version_date",
                (boe_id, article_id),
            )
            .fetchall()
        )
        if as_of is None:
            chosen = [r for r in rows if r["wording"] == ""]
        else:
            chosen = [r for r in rows if _in_force(r["in_force_from"], r["version_until"], as_of)]
        if not chosen:
            return None
        data = dict(chosen[0])
        del data["in_force_from"]  # the lookup's own column, not the unit's
        data["path"], data["notes"] = json.loads(data["path"]), json.loads(data["notes"])
        data["wordings"] = [
            {"version_date": r["version_date"], "version_until": r["version_until"],
             "version_norma": r["version_norma"], "norma_url": norma_url(r["version_norma"]), "url": r["url"]}
            for r in rows
        ]  # fmt: skip
        data["status"] = "derogado" if data.pop("repealed") else "vigente"
        data["short_name"] = short_name(boe_id)
        data["citation"] = cite(data)
        del data["id"], data["position"], data["wording"]
        return data

    @_index_errors
    def unit(self, law: str, unit: str) -> tuple[str, str]:
        """(BOE id, unit id) of what a lawyer types: a law by its BOE id, short name or number ("ET", "LAU",
        "Ley 39/2015"), a unit as "56", "art. 56 bis", "artículo 56", "a56", "disposición adicional primera" or
        "DA 1ª". An article that lies in a unit covering a range ("Artículos 127 a 130") gives that unit. What
        is not recognised comes back as given (a lookup then finds nothing)."""
        boe_id = law_id(law, self._titles()) or law
        article_id = unit_id(unit) or unit
        found = (
            self._db()
            .execute("SELECT 1 FROM articles WHERE boe_id = ? AND article_id = ? LIMIT 1", (boe_id, article_id))
            .fetchone()
        )
        if found is None and article_id.startswith("a"):
            ranges = self._db().execute(
                "SELECT DISTINCT article_id FROM articles WHERE boe_id = ? AND kind = 'articulo' "
                "AND article_id LIKE 'a%-a%'",
                (boe_id,),
            )
            article_id = next((r[0] for r in ranges if range_holds(r[0], article_id)), article_id)
        return boe_id, article_id

    @_index_errors
    def diff(self, boe_id: str, article_id: str, date_from: str, date_to: str) -> dict:
        """The word-level diff between the wordings of one unit in force on `date_from` and on `date_to`: both
        texts with their dates, links and modifying norms, and the spans (equal, delete, insert, replace).
        `QueryError` when the law or unit is not in the index, the index holds no earlier wordings, or the unit
        was not in force on a date."""
        _check_date(date_from)
        _check_date(date_to)
        boe_id, article_id = self.unit(boe_id, article_id)
        if self.law(boe_id) is None:
            raise QueryError(f"law {boe_id} is not in this index; `legalsearch info` lists what it holds")
        wordings = self._wordings(boe_id, article_id)
        if not wordings:
            raise QueryError(f"{boe_id} has no unit {article_id!r}")
        if not self.has_history:
            raise QueryError(
                f"{self.path} holds only the wording in force of each unit; index the law's BOE API XML with "
                "`legalsearch index SOURCE --history` to compare wordings"
            )
        self._check_earlier_wordings(boe_id, article_id, wordings, min(date_from, date_to))
        old, new = (self.article(boe_id, article_id, as_of=day) for day in (date_from, date_to))
        for day, found in ((date_from, old), (date_to, new)):
            if found is None:
                first = min((w["version_date"] for w in wordings if w["version_date"]), default="?")
                raise QueryError(
                    f"{boe_id} {article_id} was not in force on {day} (its first wording is from {first}; the "
                    "last may have expired); pick dates when it was"
                )
        spans = word_diff(old["text"], new["text"])
        return {
            "boe_id": boe_id, "article_id": article_id, "heading": new["heading"], "law_title": new["law_title"],
            "short_name": short_name(boe_id),
            "from": {"date": date_from, **_wording(old).to_dict(), "heading": old["heading"]},
            "to": {"date": date_to, **_wording(new).to_dict(), "heading": new["heading"]},
            "changed": any(span.op != "equal" for span in spans),
            "spans": [asdict(span) for span in spans],
        }  # fmt: skip

    def _check_earlier_wordings(self, boe_id: str, article_id: str, wordings: list[dict], earliest: str) -> None:
        """`NoEarlierWordings` when the index holds no earlier wording of `boe_id` (indexed without --history, or
        from a source that has none) and `earliest` is before the one wording it holds, or that wording is undated:
        the index cannot say what the unit read then."""
        query = "SELECT 1 FROM articles WHERE boe_id = ? AND version_until IS NOT NULL LIMIT 1"
        held = self._db().execute(query, (boe_id,)).fetchone()
        first = min((w["version_date"] for w in wordings if w["version_date"]), default=None)
        if held or (first is not None and earliest >= first):
            return
        since = f"; the wording it holds of {article_id} is in force from {first}" if first else ""
        raise NoEarlierWordings(
            f"the index holds no earlier wordings of {boe_id}{since}: index the law's BOE API XML with "
            f"`legalsearch index {boe_id} --history` to compare wordings"
        )

    def _wordings(self, boe_id: str, article_id: str) -> list[dict]:
        rows = self._db().execute(
            "SELECT version_date, version_until, version_norma, url FROM articles WHERE boe_id = ? AND article_id = ? "
            "ORDER BY version_date IS NOT NULL, version_date",
            (boe_id, article_id),
        )
        return [dict(row) for row in rows]

    @_index_errors
    def syncs(self, since: str | None = None) -> list[dict]:
        """The `legalsearch sync` runs this index remembers from `since` (YYYY-MM-DD) on, oldest first: when, the
        listing, which norms were new, changed, derogated, removed (gone, 404), failed, and indexed from the daily
        BOE — what changed in Spanish law, norm by norm, as the catalogue said."""
        if since is not None:
            _check_date(since)
        rows = self._db().execute("SELECT at, report FROM syncs ORDER BY id").fetchall()
        keep = ("listing", "new", "changed", "derogated", "removed", "gone", "missing", "failed", "diario", "commit")
        runs = []
        for row in rows:
            report = json.loads(row["report"])
            if report.get("dry_run") or (since is not None and row["at"][:10] < since):
                continue
            runs.append({"at": row["at"], **{key: report.get(key) for key in keep}})
        return runs

    @_index_errors
    def changes(self, since: str, until: str | None = None, laws: tuple[str, ...] = ()) -> list[dict]:
        """The units that got a new wording from `since` on (until `until`, inclusive), grouped by law, the law
        changed most recently first: each with its date, the norm that gave the wording and links. Read from
        the wordings' dates; a law's own first wording is no change."""
        _check_date(since)
        if until is not None:
            _check_date(until)
        where, args = ["a.version_date >= ?", "a.version_norma IS NOT NULL", "a.version_norma != a.boe_id"], [since]
        if until is not None:
            where.append("a.version_date <= ?")
            args.append(until)
        if laws:
            where.append(f"a.boe_id IN ({', '.join('?' * len(laws))})")
            args += laws
        rows = self._db().execute(
            "SELECT a.boe_id, a.article_id, a.heading, a.version_date, a.version_until, a.version_norma, a.url, "
            f"a.wording, l.title FROM articles a JOIN laws l USING (boe_id) WHERE {' AND '.join(where)} "
            "ORDER BY a.version_date DESC, a.boe_id, a.position",
            args,
        )
        grouped: dict[str, dict] = {}
        for row in rows:
            law = grouped.setdefault(
                row["boe_id"],
                {"boe_id": row["boe_id"], "title": row["title"], "short_name": short_name(row["boe_id"]),
                 "url": law_url(row["boe_id"]), "changes": []},
            )  # fmt: skip
            law["changes"].append(
                {"article_id": row["article_id"], "heading": row["heading"], "version_date": row["version_date"],
                 "version_until": row["version_until"], "version_norma": row["version_norma"],
                 "norma_url": norma_url(row["version_norma"]), "url": row["url"], "in_force": row["wording"] == ""}
            )  # fmt: skip
        return list(grouped.values())

    @_index_errors
    def context(self, query: str, k: int = 5, max_tokens: int = 2000, **options) -> str:
        """Numbered sources for a prompt, best first, within `max_tokens` (the model's tokenizer):

            [1] Art. 14 · Constitución Española (BOE-A-1978-31229) https://www.boe.es/buscar/act.php?id=…#a14
            Los españoles son iguales ante la ley, …

        A source that does not fit whole is cut at a sentence end; sources that do not fit at all are left out.
        `options` are those of `search` (dim, mode, filters …)."""
        if max_tokens <= 0:
            raise QueryError(f"max_tokens must be positive (got {max_tokens})")
        blocks: list[str] = []
        used = 0
        for n, hit in enumerate(self.search(query, k=k, **options), 1):
            header = f"[{n}] {hit.citation} {hit.url}"
            block = f"{header}\n{hit.text}"
            [size] = self.encoder.count_tokens([block])
            if used + size > max_tokens:
                room = max_tokens - used - self.encoder.count_tokens([header])[0]
                sentences = re.split(r"(?<=[.;:])\s+", hit.text)
                kept: list[str] = []
                for sentence in sentences:
                    if self.encoder.count_tokens([" ".join([*kept, sentence])])[0] > room:
                        break
                    kept.append(sentence)
                if kept:
                    blocks.append(f"{header}\n{' '.join(kept)} […]")
                break
            blocks.append(block)
            used += size
        return "\n\n".join(blocks)

    @_index_errors
    def laws(self) -> list[dict]:
        """Every law's metadata (as `law` gives it: `materias` a list, `referencias` a dict) and `articles`, how
        many units it has, in the order indexed."""
        rows = self._db().execute(
            "SELECT l.*, COUNT(a.id) AS articles FROM laws l LEFT JOIN articles a ON a.boe_id = l.boe_id "
            "AND a.wording = '' GROUP BY l.boe_id ORDER BY l.rowid"
        )
        laws = [dict(row) for row in rows]
        for law in laws:
            for name in ("materias", "referencias"):
                law[name] = json.loads(law[name])
        return laws


def _some(values: list[str], shown: int = 3) -> str:
    """ "A, B, C and 197 more": an error names a few of what was asked, never all of a long list."""
    more = len(values) - shown
    return ", ".join(values[:shown]) + (f" and {more} more" if more > 0 else "")


def _wording(row: dict) -> Wording:
    return Wording(row["version_date"], row["version_until"], row["version_norma"], row["url"], row["text"])


def _check_date(as_of: str) -> None:
    try:
        check_day(as_of, "as_of")
    except UsageError as exc:
        raise QueryError(str(exc)) from None


def _contains(sorted_rows: np.ndarray, row: int) -> bool:
    i = int(np.searchsorted(sorted_rows, row))
    return i < len(sorted_rows) and int(sorted_rows[i]) == row


def _in_force(since: str | None, until: str | None, day: str) -> bool:
    """Whether a wording in force from `since` until `until` (ISO dates; None: open) was in force on `day`."""
    return (since is None or since <= day) and (until is None or day < until)
