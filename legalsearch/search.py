"""Query an index and cite what answers.

Modes: `dense` (cosine at one Matryoshka dim), `funnel` (shortlist at a small dim, re-rank with the full-dim
vectors), `lexical` (BM25 with Spanish analysis) and `hybrid` (reciprocal rank fusion of dense and lexical).
Chunks roll up to articles (an article's best chunk). Filters act before the top-k cut. A query that cites an
article ("artículo 14 CE") gets that article first."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np

from .browse import Browsing, NoEarlierWordings, check_date  # noqa: F401 (NoEarlierWordings re-exported)
from .citations import find_citation, named_day, named_law, range_holds, short_name
from .embedding import Encoder, check_requested_runtime, check_runtime, load_cross_encoder, same_model
from .engines import StoreSpec
from .engines.base import Reader, Restriction
from .engines.local import LocalReader
from .errors import ModelError, QueryError
from .filters import KIND_GROUPS, Filters  # noqa: F401 (re-exported)
from .hits import Hit, cite  # noqa: F401 (re-exported)
from .modes import SEARCH_MODES
from .pinning import index_errors
from .pull import usable_mode
from .query_encoder import load_query_encoder
from .quiet import quiet_third_party
from .rag import RagContext
from .ranking import SAMPLE as PRIOR_SAMPLE
from .ranking import Candidate, Priors
from .ranking import apply as apply_priors
from .relevance import GOOD, MARGIN, NONSENSE, dense_evidence, lexical_evidence, probe_vectors, question_words
from .retrievers import Dense, Funnel, Hybrid, Lexical, Retriever, View
from .snapshot import while_moving
from .store import check_files, read_manifest

MAX_QUERY_CHARS = 4000
MAX_K = 1000
HYBRID_FUNNEL_ABOVE = 100_000  # chunks; see `retriever`
PRIOR_POOL = 30  # articles each retriever ranks for the priors to reorder


def _checked_manifest(path: Path) -> dict:
    """The manifest of the index at `path`, its files checked (the cheap checks of every open)."""
    manifest = read_manifest(path)
    check_files(path, manifest)
    return manifest


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
        memo = search._reader.memo
        if self.name not in memo:
            memo[self.name] = self.factory()
        return memo[self.name]

    def __set__(self, search, value) -> None:
        search._reader.memo[self.name] = value


class LegalSearch(Browsing, RagContext):
    """An open index: the query pipeline (retrievers, legal priors, citations, relevance, hits); browsing
    (`browse.Browsing`) and RAG context (`rag.RagContext`) are mixed in. It reads its store (a local index folder
    or Qdrant) only through `engines.base.Reader`. Cheap to open (FAISS files are memory-mapped, the model loads
    on the first query) and safe to share between threads.

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
        spec: StoreSpec,
        reader: Reader,
        encoder: Encoder | None = None,
        device: str | None = None,
        backend: str | None = None,
        precision: str | None = None,
    ) -> None:
        self.spec = spec
        self.path = spec.path if spec.engine == "local" else Path(spec.label)
        self._encoder = encoder
        self._device = device
        self._runtime = (backend, precision)
        self._rerankers: dict[str, object] = {}
        self._lock = threading.RLock()
        self._pinned = threading.local()  # the commit the current thread's query reads (`pinning.index_errors`)
        self._current = reader
        self._forget()

    @property
    def _reader(self) -> Reader:
        """The commit this thread's query is pinned to, else the latest one opened."""
        return getattr(self._pinned, "reader", None) or self._current

    @property
    def _snapshot(self):
        """The local engine's snapshot this thread reads (tests and benchmarks of the local engine)."""
        return self._reader.snapshot

    def _forget(self) -> None:
        """Drop what was computed from the previous snapshot. Each of these is a `_PerSnapshot` attribute (kept on
        the snapshot): a query still reading the previous commit keeps its own."""
        self._law_titles: dict[str, str] | None = None
        self._allowed_cache: dict[Filters, np.ndarray] = {}
        self._match_cosine: dict[int, float] = {}

    @property
    def manifest(self) -> dict:
        """The manifest with the catalogue's facts (counts, segments, commit) of the commit this reader serves."""
        return self._reader.manifest

    @property
    def commit(self) -> int:
        """The commit this reader serves (`legalsearch info`, `/health`)."""
        return self._reader.commit

    def _pinned_query(self, method, *args, **kwargs):
        """Run one query on one commit, whatever other threads' queries move the reader to meanwhile. A file of
        that commit that vanished because a writer moved the index on (a merge removing a folder before the
        snapshot held it) sends the query once more to the next commit; missing while nothing moved, it is an
        error."""
        for attempt in (1, 2):
            self.refresh()
            self._pinned.reader = reader = self._current
            try:
                return method(self, *args, **kwargs)
            except FileNotFoundError:
                if attempt == 2 or reader.is_current():
                    raise
            finally:
                self._pinned.reader = None
        raise AssertionError("unreachable")

    def refresh(self) -> bool:
        """Move to the latest commit if a writer made one since (cheap when none did: one stat, one query).
        Whether it moved."""
        if self._current.is_current():
            return False
        with self._lock:
            if self._current.is_current():
                return False
            self._current = _latest(self.spec, self._current)
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
        spec = StoreSpec.parse(path)
        reader = _latest(spec)
        recorded = reader.manifest["model"]
        wanted = model or (encoder.info.model_id if encoder else None)
        if wanted is not None and not same_model(recorded, wanted):
            raise ModelError(
                f"{path} was built with model {recorded['id']}; it cannot be queried with {wanted} "
                "(vectors of different models are not comparable): drop --model or rebuild the index"
            )
        if encoder is not None:
            check_runtime(recorded, encoder.info, path)
        check_requested_runtime(recorded, backend, precision, path)
        return cls(spec, reader, encoder, device, backend, precision)

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

    @index_errors
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
        if allowed is not None and allowed.count == 0:
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
        meta = self._reader.units([article for article, _, _ in ranked])
        candidates = [
            Candidate(article, score, row, meta[article]["kind"], meta[article]["boe_id"], meta[article]["rango"],
                      meta[article]["repealed"], meta[article]["text"][:PRIOR_SAMPLE])
            for article, score, row in ranked
        ]  # fmt: skip
        named = named_law(query, self._titles()) if priors.law_boost != 1.0 else None
        return [(c.article, c.score, c.row) for c in apply_priors(candidates, priors, query, named)]

    @index_errors
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
    def _view(self) -> View:
        return View(self._reader, self.manifest.get("defaults", {}))

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
        dense_mode = "funnel" if above is not None and view.reader.live > above else "dense"
        return Hybrid(view, self.retriever(dense_mode, dim, shortlist), self.retriever("lexical", dim))

    # --- filters and citations ------------------------------------------------------------------------
    @property
    def has_history(self) -> bool:
        """Whether the index holds earlier wordings of its units (built with `--history`)."""
        return bool(self.manifest["counts"].get("earlier_wordings"))

    def _allowed(self, filters: Filters | None) -> Restriction | None:
        """What a search may return, as the store applies it, or None for every live chunk. An index with earlier
        wordings always restricts: to the wordings in force, or to those in force on the filters' date."""
        filters = filters or Filters()
        if not filters.active and not self.has_history:
            return None
        if filters.as_of:
            check_date(filters.as_of)
        with self._lock:
            allowed = self._allowed_cache.get(filters)
        if allowed is None:
            allowed = self._reader.restrict(filters, in_force_only=self.has_history and not filters.as_of)
            with self._lock:
                if len(self._allowed_cache) >= 16:
                    self._allowed_cache.clear()
                self._allowed_cache[filters] = allowed
        return allowed

    def _titles(self) -> dict[str, str]:
        with self._lock:
            if self._law_titles is None:
                self._law_titles = self._reader.titles()
            return self._law_titles

    def _cited(self, query: str, allowed: Restriction | None) -> tuple[int, int] | None:
        """(unit key, best chunk) of the article the query cites, if it is in the index and allowed."""
        citation = find_citation(query, self._titles())
        if citation is None:
            return None
        found = self._reader.unit_chunks(citation.boe_id, [citation.article_id])
        if not found:  # "artículo 128 CC" lies in the unit "Artículos 127 a 130. (Derogados)"
            found = [
                row for row in self._reader.unit_chunks(citation.boe_id, None)
                if range_holds(row[1], citation.article_id)
            ]  # fmt: skip
        for article, _, _, chunk in found:  # the wording in force first; with a date, the one the filters allow
            if self._reader.allows(allowed, chunk):
                return int(article), int(chunk)
        return None

    def _hits(self, query: str, ranked, k: int, mode: str, allowed) -> list[Hit]:
        cited = self._cited(query, allowed)
        chosen: list[tuple[float, int, int, str]] = []  # (score, unit, chunk, match)
        if cited is not None:
            chosen.append((1.0, cited[0], cited[1], "cita"))
        for article, score, chunk in ranked:
            if len(chosen) == k:
                break
            if cited is None or article != cited[0]:
                chosen.append((score, article, chunk, mode))
        units = self._reader.units([unit for _, unit, _, _ in chosen])
        chunks = self._reader.chunks([chunk for _, _, chunk, _ in chosen])
        return [
            _hit(rank, score, units[unit], chunks[chunk], chunk, match)
            for rank, (score, unit, chunk, match) in enumerate(chosen, 1)
        ]

    def _judge(self, queries: list[str], vectors: np.ndarray | None, dim: int, results: list[list[Hit]]) -> None:
        """Set each hit's cosine, matched words, relevance and good_match (`relevance.py`)."""
        threshold = self.match_cosine(dim) if vectors is not None else None
        for q, (query, hits) in enumerate(zip(queries, results, strict=True)):
            if not hits:
                continue
            cosines: list[float | None] = [None] * len(hits)
            if vectors is not None:
                rows = np.array([hit._row for hit in hits], dtype=np.int64)
                unit = vectors[q, :dim] / np.linalg.norm(vectors[q, :dim])
                cosines = [float(c) for c in self._reader.prefixes(rows, dim) @ unit.astype(np.float32)]
            words = question_words(query, self._reader.idf)
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


def _latest(spec: StoreSpec, previous: Reader | None = None) -> Reader:
    """The reader of the store's latest commit (sharing what it can with `previous`)."""
    if spec.engine == "qdrant":
        from .engines import qdrant

        return qdrant.open_reader(spec, previous)
    path = spec.path
    if previous is None:  # the first open checks the files; later ones check the segments they open
        manifest = while_moving(path, lambda: _checked_manifest(path))
        given = [manifest]  # the first attempt opens the manifest read; one more reads the latest
        return LocalReader.latest(path, lambda: given.pop() if given else read_manifest(path))
    return LocalReader.latest(path, lambda: read_manifest(path), previous)


def _hit(rank: int, score: float, a: dict, chunk: dict, row: int, match: str) -> Hit:
    """A hit from its unit's row and the chunk that matched."""
    hit = Hit(
        rank=rank,
        score=round(float(score), 6),
        boe_id=a["boe_id"],
        law_title=a["law_title"],
        article_id=a["article_id"],
        kind=a["kind"],
        number=a["number"],
        heading=a["heading"],
        path=list(a["path"]),
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
