"""The Qdrant engine's reader: one commit (the head when opened) of a store, behind `engines.base.Reader`.

Chunk and unit keys are the points' integer ids. Filters become a Qdrant payload filter over the chunks'
fields (plus the commit's visibility). Dense search is `query_points` on the named vector of the dim; the funnel
shortlists at the small dim and re-ranks by exact cosine on the returned full vectors, as the local engine does.
Lexical search takes candidates from the sparse "bm25" vectors and scores them exactly, client-side, with the
commit's statistics and the same float32 arithmetic as `lexical.LexicalIndex` (`lexical`)."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import lexical
from ..errors import QueryError
from ..filters import Filters
from ..matryoshka import matryoshka
from .base import Found, Reader, Restriction
from .qdrant_points import bucket_ids, df_at, filter_conditions, idf, law_row, match, unit_row, visible
from .qdrant_store import Connection
from .qdrant_writer import manifest_of

# A lexical query whose terms occur in at most this many chunks in all scores every one of them (exact); above,
# the best EXACT_UP_TO (at least 50 × n) by the stored sparse vectors are scored.
EXACT_UP_TO = 20_000
RANGE_UNIT = re.compile(r"a.*-a")  # the SQL's article_id LIKE 'a%-a%'


@dataclass
class _Scored:
    id: int
    score: float
    payload: dict
    vector: dict


@dataclass
class _Native:
    filter: object
    allowed: dict = field(default_factory=dict)


def open_reader(spec, previous=None) -> QdrantReader:
    """The reader of the store's latest commit (`previous`: a reader of the same store, whose client it shares)."""
    conn = Connection(spec)
    try:
        head = conn.head()
        if head is None:
            raise conn.no_index()
        return QdrantReader(conn, head, conn.state(head["commit"]))
    except BaseException:
        conn.close()
        raise


class QdrantReader(Reader):
    def __init__(self, conn: Connection, head: dict, state: dict) -> None:
        self.conn = conn
        self.head = head
        self.state = state
        self.manifest = manifest_of(head, state)
        self.commit = head["commit"]
        self.generation = head["generation"]
        self.memo = {}
        self._lock = threading.Lock()
        self._known: dict | None = None

    def __repr__(self) -> str:
        return f"QdrantReader({self.conn.label}, commit {self.commit})"

    def name(self, kind: str) -> str:
        return self.conn.collection(self.generation, kind)

    def is_current(self) -> bool:
        head = self.conn.head()
        return bool(
            head and head["commit"] == self.commit and head["generation"] == self.generation
            and head["manifest"] == self.head["manifest"]
        )  # fmt: skip

    @property
    def live(self) -> int:
        return int(self.state["chunks"])

    def close(self) -> None:
        self.conn.close()

    def _scroll(self, kind: str, must=None, payload=True, vectors=False):
        return self.conn.scroll(self.name(kind), visible(self.commit, must), payload, vectors)

    # --- candidates ------------------------------------------------------------------------------------
    def known(self) -> dict:
        """The laws, rangos and materias this commit holds (what filters may name)."""
        with self._lock:
            if self._known is None:
                rows = [p.payload["row"] for p in self._scroll("laws", payload=["row"])]
                self._known = {
                    "laws": {r["boe_id"] for r in rows},
                    "rangos": {r["rango"] for r in rows if r.get("rango") is not None},
                    "materias": {m for r in rows for m in r.get("materias") or ()},
                }
            return self._known

    def restrict(self, filters: Filters, in_force_only: bool) -> Restriction:
        must, must_not = filter_conditions(filters, self.known())
        where = visible(self.commit, must, must_not)
        count = self.conn.call("count", self.name("chunks"), count_filter=where, exact=True).count
        return Restriction(filters, int(count), _Native(where))

    def allows(self, restriction: Restriction | None, chunk: int) -> bool:
        if restriction is None:
            return True
        native = restriction.native
        if chunk not in native.allowed:
            from qdrant_client import models as m

            where = m.Filter(must=[native.filter, m.HasIdCondition(has_id=[int(chunk)])])
            found = self.conn.call("count", self.name("chunks"), count_filter=where, exact=True).count
            native.allowed[chunk] = bool(found)
        return native.allowed[chunk]

    def _where(self, restriction: Restriction | None):
        return visible(self.commit) if restriction is None else restriction.native.filter

    # --- retrieval -------------------------------------------------------------------------------------
    def _nearest(self, queries: np.ndarray, using: str, n: int, restriction, vectors=False) -> list[list]:
        if using not in {f"d{d}" for d in self.manifest["dims"]}:
            built = ", ".join(str(d) for d in self.manifest["dims"])
            raise QueryError(f"dim {using[1:]} was not built for this index; it has dims {built}")
        if n <= 0 or (restriction is not None and restriction.count == 0):
            return [[] for _ in range(len(queries))]
        from qdrant_client import models as m

        where = self._where(restriction)
        requests = [
            m.QueryRequest(query=q.tolist(), using=using, filter=where, limit=n, with_payload=["unit"],
                           with_vector=vectors)
            for q in queries
        ]  # fmt: skip
        answers = self.conn.call("query_batch_points", self.name("chunks"), requests=requests)
        return [sorted(a.points, key=lambda p: (-p.score, p.id)) for a in answers]

    def dense(self, vectors: np.ndarray, dim: int, n: int, restriction: Restriction | None) -> Found:
        """Candidates from Qdrant (a margin beyond `n`), scored again with the local engine's own FAISS
        arithmetic (`_same_arithmetic`), so that near-ties order as they do there and rank fusion agrees."""
        found = self._ranked(vectors, dim, n, restriction)
        return [[(int(p.id), float(p.score), int(p.payload["unit"])) for p in points] for points in found]

    def _ranked(self, vectors: np.ndarray, dim: int, n: int, restriction, also: tuple = ()) -> list[list]:
        queries = matryoshka(vectors, dim)
        fetch = n + max(8, n // 4)
        found = self._nearest(queries, f"d{dim}", fetch, restriction, [f"d{dim}", *also])
        if self.manifest["faiss"].get("quantize", "none") == "none":
            found = self._same_arithmetic(queries, dim, found, restriction is not None)
        return [points[:n] for points in found]

    def _same_arithmetic(self, queries: np.ndarray, dim: int, found: list[list], selected: bool) -> list[list]:
        """Each query's candidates scored by a FAISS index of the local engine's kind for `dim` (float32 Flat, or
        float16 SQfp16 above 128 dims) over their stored vectors, searched as the local engine searches (every
        query at once; through a selector where a filter applies), best first, ties by key."""
        import faiss

        from ..segments import factory

        pool = {int(p.id): p for points in found for p in points}
        if not pool:
            return found
        keys = np.array(sorted(pool), dtype=np.int64)
        stored = np.array([pool[k].vector[f"d{dim}"] for k in keys], dtype=np.float32)
        index = faiss.index_factory(dim, factory("flat", "none", dim), faiss.METRIC_INNER_PRODUCT)
        index.add(stored)
        params = faiss.SearchParameters(sel=faiss.IDSelectorRange(0, len(keys))) if selected else None
        scores, rows = index.search(np.ascontiguousarray(queries), len(keys), params=params)
        ranked = []
        for q, points in enumerate(found):
            mine = {int(p.id) for p in points}
            pairs = [(float(s), int(keys[r])) for s, r in zip(scores[q], rows[q], strict=True) if r >= 0]
            pairs = sorted((p for p in pairs if p[1] in mine), key=lambda p: (-p[0], p[1]))
            ranked.append([_Scored(key, score, pool[key].payload, pool[key].vector) for score, key in pairs])
        return ranked

    def funnel(self, vectors, dim: int, small: int, shortlist: int, n: int, restriction) -> Found:
        full = matryoshka(vectors, dim)
        results = []
        for q, points in enumerate(self._ranked(vectors, small, max(n, shortlist), restriction, ("full",))):
            if not points:
                results.append([])
                continue
            keys = np.array([p.id for p in points], dtype=np.int64)
            prefixes = matryoshka(np.array([p.vector["full"] for p in points], dtype=np.float32), dim)
            unit = full[q] / np.linalg.norm(full[q])
            exact = np.einsum("ij,j->i", prefixes, unit.astype(np.float32))
            order = np.lexsort((keys, -exact))
            owner = {int(p.id): int(p.payload["unit"]) for p in points}
            results.append([(int(keys[i]), float(exact[i]), owner[int(keys[i])]) for i in order])
        return results

    def prefixes(self, chunks: Sequence[int], dim: int) -> np.ndarray:
        keys = [int(c) for c in chunks]
        if not keys:
            return np.zeros((0, dim), dtype=np.float32)
        points = {p.id: p.vector["full"] for p in self.conn.get(self.name("chunks"), keys, False, ["full"])}
        return matryoshka(np.array([points[k] for k in keys], dtype=np.float32), dim)

    def _terms(self, terms: set[str]) -> dict[str, tuple[int, int]]:
        """term → (sparse index id, document frequency at this commit) of the terms held live."""
        held = {}
        for bucket in self.conn.get(self.name("terms"), bucket_ids(terms)):
            for term in terms & bucket.payload["terms"].keys():
                entry = bucket.payload["terms"][term]
                if entry["created"] <= self.commit and df_at(entry, self.commit) > 0:
                    held[term] = (entry["id"], df_at(entry, self.commit))
        return held

    def idf(self, term: str) -> float:
        held = self._terms({term})
        return idf(self.live, held[term][1] if term in held else 0)

    def lexical(self, queries: Sequence[str], n: int, restriction, expansions, weight: float) -> Found:
        expanded = lexical.analyze(expansions) if expansions is not None and weight > 0 else None
        results = []
        for i, tokens in enumerate(lexical.analyze(queries)):
            extra = list(dict.fromkeys(expanded[i])) if expanded else []
            held = self._terms(set(tokens) | set(extra))
            weights: dict[str, float] = {}
            for token in tokens:  # a word said twice counts twice, as in BM25 over the query's tokens
                if token in held:
                    weights[token] = weights.get(token, 0.0) + 1.0
            for token in extra:
                if token not in weights and token in held:
                    weights[token] = weight
            if not weights or n <= 0 or (restriction is not None and restriction.count == 0):
                results.append([])
                continue
            results.append(self._bm25(weights, held, n, restriction))
        return results

    def _bm25(self, weights: dict[str, float], held: dict, n: int, restriction) -> list[tuple[int, float, int]]:
        from qdrant_client import models as m

        idfs = {t: idf(self.live, held[t][1]) for t in weights}
        pairs = sorted((held[t][0], w * idfs[t]) for t, w in weights.items())
        matching = sum(held[t][1] for t in weights)
        limit = matching if matching <= EXACT_UP_TO else max(EXACT_UP_TO, 50 * n)
        answer = self.conn.call(
            "query_points", self.name("chunks"), query=m.SparseVector(indices=[p[0] for p in pairs],
            values=[p[1] for p in pairs]), using="bm25", query_filter=self._where(restriction), limit=limit,
            with_payload=["unit", "tf", "length"],
        )  # fmt: skip
        points = answer.points
        if not points:
            return []
        keys = np.array([p.id for p in points], dtype=np.int64)
        lengths = np.array([p.payload["length"] for p in points], dtype=np.int32)
        average = self.state["total_length"] / self.live if self.live else 1.0
        scores = np.zeros(len(points), dtype=np.float32)
        for term, w in weights.items():  # lexical.LexicalIndex.scores, term by term, in the same float32 steps
            tf = np.array([p.payload["tf"].get(term, 0) for p in points], dtype=np.float32)
            docs = np.nonzero(tf)[0]
            if not len(docs):
                continue
            weight_idf = np.float32(w * idfs[term])
            norm = np.float32(lexical.K1) * (
                np.float32(1 - lexical.B) + np.float32(lexical.B) * lengths[docs] / np.float32(average)
            )
            scores[docs] += (weight_idf * (tf[docs] / (norm + tf[docs]))).astype(np.float32)
        order = np.lexsort((keys, -scores))[:n]
        return [(int(keys[i]), float(scores[i]), int(points[i].payload["unit"])) for i in order if scores[i] > 0]

    # --- what hits show ----------------------------------------------------------------------------------
    def units(self, keys) -> dict[int, dict]:
        ids = list(dict.fromkeys(int(k) for k in keys))
        return {p.id: unit_row(p.payload) for p in self.conn.get(self.name("units"), ids)}

    def chunks(self, keys) -> dict[int, dict]:
        ids = list(dict.fromkeys(int(k) for k in keys))
        fields = ["part", "text", "boe_id", "article_id", "wording"]
        return {
            p.id: {"row": p.id, **{f: p.payload[f] for f in fields}}
            for p in self.conn.get(self.name("chunks"), ids, fields)
        }

    def unit_chunks(self, boe_id: str, article_ids) -> list[tuple[int, str, str, int]]:
        must = [match("boe_id", [boe_id])]
        if article_ids is not None:
            if not article_ids:
                return []
            must.append(match("article_id", article_ids))
        found = []
        for p in self._scroll("chunks", must, ["unit", "article_id", "wording", "kind"]):
            if article_ids is None and not (
                p.payload["kind"] == "articulo" and RANGE_UNIT.match(p.payload["article_id"])
            ):
                continue
            found.append((int(p.payload["unit"]), p.payload["article_id"], p.payload["wording"], int(p.id)))
        return sorted(found, key=lambda r: (r[2] != "", r[3]))

    # --- browsing --------------------------------------------------------------------------------------
    def _law_points(self) -> list:
        return sorted(self._scroll("laws"), key=lambda p: p.payload["key"])

    def titles(self) -> dict[str, str]:
        return {p.payload["boe_id"]: p.payload["row"]["title"] for p in self._law_points()}

    def laws(self) -> list[dict]:
        return [{**law_row(p.payload), "articles": p.payload["articles"]} for p in self._law_points()]

    def law(self, boe_id: str) -> dict | None:
        found = list(self._scroll("laws", [match("boe_id", [boe_id])]))
        return law_row(found[0].payload) if found else None

    def _units_of(self, boe_id: str, more=()) -> list[dict]:
        return sorted((p.payload for p in self._scroll("units", [match("boe_id", [boe_id]), *more])),
                      key=lambda u: u["position"])  # fmt: skip

    def units_in_force(self, boe_id: str) -> list[dict]:
        fields = ("article_id", "kind", "number", "heading", "path", "url")
        return [{f: u[f] for f in fields} for u in self._units_of(boe_id, [match("wording", [""])])]

    def wordings(self, boe_id: str, article_id: str) -> list[dict]:
        rows = [unit_row(u) for u in self._units_of(boe_id, [match("article_id", [article_id])])]
        return sorted(rows, key=lambda r: (r["version_date"] is not None, r["version_date"] or ""))

    def has_unit(self, boe_id: str, article_id: str) -> bool:
        where = visible(self.commit, [match("boe_id", [boe_id]), match("article_id", [article_id])])
        return self.conn.call("count", self.name("units"), count_filter=where, exact=True).count > 0

    def range_units(self, boe_id: str) -> list[str]:
        units = self._units_of(boe_id, [match("kind", ["articulo"])])
        return list(dict.fromkeys(u["article_id"] for u in units if RANGE_UNIT.match(u["article_id"])))

    def has_earlier_wordings(self, boe_id: str) -> bool:
        return any(u.get("version_until") is not None for u in self._units_of(boe_id))

    def changes(self, since: str, until: str | None, laws: Sequence[str]) -> list[dict]:
        must = [match("boe_id", laws)] if laws else []
        rows = []
        for p in self._scroll("units", must):
            u = p.payload
            date = u.get("version_date")
            if date is None or date < since or (until is not None and date > until):
                continue
            if u.get("version_norma") is None or u["version_norma"] == u["boe_id"]:
                continue
            rows.append(u)
        rows.sort(key=lambda u: (u["boe_id"], u["position"]))
        rows.sort(key=lambda u: u["version_date"], reverse=True)
        fields = ("boe_id", "article_id", "heading", "version_date", "version_until", "version_norma", "url", "wording")
        return [{**{f: u[f] for f in fields}, "title": u["law_title"]} for u in rows]

    def article_keys(self) -> set[str]:
        units = self._scroll("units", None, ["boe_id", "article_id"])
        return {f"{p.payload['boe_id']}#{p.payload['article_id']}" for p in units}

    def syncs(self) -> list[tuple[str, dict]]:
        from qdrant_client import models as m

        found = self.conn.scroll(self.conn.meta, m.Filter(must=[match("kind", ["sync"])]))
        return [(p.payload["at"], p.payload["report"]) for p in sorted(found, key=lambda p: p.payload["seq"])]
