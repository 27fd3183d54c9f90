"""What the Qdrant engine stores in each point, and the filters that read them back: versioned visibility (a
reader of commit C), `Filters` as a Qdrant filter (the same semantics as the local engine's SQL), and the
conversions between points and the rows `engines.base.Reader` returns."""

from __future__ import annotations

import datetime
import hashlib
import json
from collections import Counter

import numpy as np

from .. import lexical
from ..documents import Article, Chunk, Law
from ..errors import QueryError
from ..filters import Filters
from ..matryoshka import matryoshka
from ..segments import HALF_ABOVE
from ..store import ARTICLE_COLUMNS, LAW_COLUMNS, StoredLaw
from .qdrant_store import day, point_id

UNIT_COLUMNS = ["boe_id", "position", *ARTICLE_COLUMNS, "wording", "content_hash"]
LAW_ROW = [*LAW_COLUMNS, "source_sha256"]
# payload fields a filter or a lookup reads: indexed on a server (local mode scans)
KEYWORD_FIELDS = {
    "chunks": ("boe_id", "article_id", "wording", "rango", "kind", "materias", "status", "law_status",
               "content_hash", "chunk_id"),
    "units": ("boe_id", "article_id", "wording", "kind"),
    "laws": ("boe_id",),
    "terms": (),
}  # fmt: skip
INTEGER_FIELDS = {
    "chunks": ("added", "removed", "until_day", "from_day", "key", "unit"),
    "units": ("added", "removed", "key", "vdate_day"),
    "laws": ("added", "removed", "key"),
    "terms": ("latest",),
}


def _models():
    from qdrant_client import models

    return models


# --- visibility ----------------------------------------------------------------------------------------------
def visible(commit: int, must: list | None = None, must_not: list | None = None):
    """The points a reader of `commit` sees (and `must`/`must_not` besides)."""
    m = _models()
    return m.Filter(
        must=[m.FieldCondition(key="added", range=m.Range(lte=commit)), *(must or [])],
        must_not=[m.FieldCondition(key="removed", range=m.Range(lte=commit)), *(must_not or [])],
    )


def match(key: str, values) -> object:
    m = _models()
    values = list(values)
    if len(values) == 1:
        return m.FieldCondition(key=key, match=m.MatchValue(value=values[0]))
    return m.FieldCondition(key=key, match=m.MatchAny(any=values))


def after(key: str, commit: int):
    m = _models()
    return m.Filter(must=[m.FieldCondition(key=key, range=m.Range(gt=commit))])


def today() -> int:
    return int(datetime.date.today().strftime("%Y%m%d"))


def some(values, shown: int = 3) -> str:
    more = len(values) - shown
    return ", ".join(values[:shown]) + (f" and {more} more" if more > 0 else "")


def filter_conditions(filters: Filters, known: dict) -> tuple[list, list]:
    """(must, must_not) conditions of `filters` over chunk payloads; `known` holds the index's laws, rangos and
    materias (unknown ones raise the same `QueryError` lines as the local engine)."""
    from ..catalogue.reads import known_values

    m = _models()
    must, must_not = [], []
    if filters.laws:
        unknown = [b for b in filters.laws if b not in known["laws"]]
        if unknown:
            held = sorted(known["laws"])
            listed = ", ".join(held[:12]) + (" …" if len(held) > 12 else "")
            raise QueryError(f"law {some(unknown)} is not in this index; it holds {listed}")
        must.append(match("boe_id", filters.laws))
    if filters.rangos:
        must.append(match("rango", known_values(filters.rangos, known["rangos"], "rango")))
    if filters.materias:
        must.append(match("materias", known_values(filters.materias, known["materias"], "materia")))
    kinds = filters.unit_kinds()
    if kinds:
        must.append(match("kind", kinds))
    if filters.vigentes:  # NOT (unit repealed OR law repealed OR the wording in force expired)
        must_not += [
            match("status", ["derogado"]),
            match("law_status", ["derogada"]),
            m.Filter(must=[match("wording", [""]), m.FieldCondition(key="until_day", range=m.Range(lte=today()))]),
        ]
    if filters.as_of:
        as_of = day(filters.as_of)
        must_not += [
            m.FieldCondition(key="from_day", range=m.Range(gt=as_of)),
            m.FieldCondition(key="until_day", range=m.Range(lte=as_of)),
        ]
    else:
        must.append(match("wording", [""]))
    return must, must_not


# --- writing ----------------------------------------------------------------------------------------------------
def stored_vectors(vectors: np.ndarray, dims, quantize: str) -> dict[str, np.ndarray]:
    """The named vectors of chunks: "full" (the float16 values the local engine stores, as float32) and "d<dim>"
    per built dim: the re-normalised prefixes, in float16 above `HALF_ABOVE` as the local engine's SQfp16 FAISS
    files hold them (so dense scores are the same inner products)."""
    halves = np.asarray(vectors, dtype=np.float16)
    named = {"full": halves.astype(np.float32)}
    for dim in dims:
        prefixes = matryoshka(halves, dim)
        if quantize == "none" and dim > HALF_ABOVE:
            prefixes = prefixes.astype(np.float16).astype(np.float32)
        named[f"d{dim}"] = prefixes
    return named


def bm25_values(tf: dict[str, int], length: int, average: float, ids: dict[str, int]):
    """The sparse vector of a chunk: BM25's term-frequency part at the average length when written (the
    candidates' order; exact scores are computed at query time with the commit's statistics)."""
    m = _models()
    norm = lexical.K1 * (1 - lexical.B + lexical.B * length / average)
    pairs = sorted((ids[t], count / (count + norm)) for t, count in tf.items())
    return m.SparseVector(indices=[i for i, _ in pairs], values=[v for _, v in pairs])


def law_payload(stored: StoredLaw, key: int, commit: int) -> dict:
    law = stored.law
    row = {c: list(getattr(law, c)) if c == "materias" else getattr(law, c) for c in LAW_COLUMNS}
    row["source_sha256"] = stored.source_sha256
    return {"key": key, "boe_id": law.boe_id, "row": row, "articles": len(law.articles), "added": commit}


def unit_payloads(law: Law, first_key: int, commit: int) -> list[dict]:
    units = []
    wordings = [(a, "") for a in law.articles] + [(a, a.version_date) for a in law.history]
    for position, (article, wording) in enumerate(wordings):
        values = {
            c: list(getattr(article, c)) if c in ("path", "notes") else getattr(article, c) for c in ARTICLE_COLUMNS
        }
        values.update(
            key=first_key + position, boe_id=law.boe_id, position=position, wording=wording,
            content_hash=article.content_hash, law_title=law.title, rango=law.rango,
            source_format=law.source_format, law_status=law.status, materias=list(law.materias),
            fecha_vigencia=law.fecha_vigencia, fecha_publicacion=law.fecha_publicacion,
            vdate_day=day(article.version_date), added=commit,
        )  # fmt: skip
        units.append(values)
    return units


def chunk_payload(chunk: Chunk, key: int, unit: dict, tokens: list[str], commit: int) -> dict:
    in_force_from = unit["version_date"] or unit["fecha_vigencia"] or unit["fecha_publicacion"]
    return {
        "key": key, "unit": unit["key"], "chunk_id": chunk.chunk_id, "boe_id": chunk.boe_id,
        "article_id": chunk.article_id, "wording": chunk.version or "", "part": chunk.part, "text": chunk.text,
        "content_hash": chunk.content_hash, "rango": unit["rango"], "kind": unit["kind"],
        "materias": unit["materias"], "status": unit["status"], "law_status": unit["law_status"],
        "version_until": unit["version_until"], "until_day": day(unit["version_until"]),
        "from_day": day(in_force_from), "tf": dict(Counter(tokens)), "length": len(tokens), "added": commit,
    }  # fmt: skip


# --- reading --------------------------------------------------------------------------------------------------
def unit_row(payload: dict) -> dict:
    """A unit point as the local engine's `articles` row with its law's fields (`Reader.units`)."""
    row = {c: payload.get(c) for c in UNIT_COLUMNS}
    row["id"] = payload["key"]
    row["law_title"] = payload["law_title"]
    row["rango"] = payload["rango"]
    row["source_format"] = payload["source_format"]
    until = day(payload.get("version_until"))
    row["repealed"] = bool(
        payload["status"] == "derogado" or payload["law_status"] == "derogada"
        or (payload["wording"] == "" and until is not None and until <= today())
    )  # fmt: skip
    row["in_force_from"] = payload["version_date"] or payload["fecha_vigencia"] or payload["fecha_publicacion"]
    return row


def law_row(payload: dict) -> dict:
    row = dict(payload["row"])
    row["materias"] = list(row.get("materias") or [])
    return row


def article_of(payload: dict) -> Article:
    values = {c: payload.get(c) for c in ARTICLE_COLUMNS}
    values["path"] = tuple(values["path"] or ())
    values["notes"] = tuple(values["notes"] or ())
    return Article(**values)


def law_of(payload: dict, units: list[dict]) -> Law:
    row = dict(payload["row"])
    row.pop("source_sha256", None)
    row["materias"] = tuple(row.get("materias") or ())
    row["referencias"] = json.loads(json.dumps(row.get("referencias") or {}))
    law = Law(**row)
    for unit in sorted(units, key=lambda u: u["position"]):
        (law.history if unit["wording"] else law.articles).append(article_of(unit))
    return law


TERM_BUCKETS = 256  # terms are kept in this many points (a commit rewrites the buckets of the terms it touches)


def bucket_of(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big") % TERM_BUCKETS


def bucket_ids(terms) -> list[str]:
    return [point_id(f"terms:{b}") for b in sorted({bucket_of(t) for t in terms})]


def df_at(term: dict, commit: int) -> int:
    """A term's document frequency as of `commit` (its last entry at or before it)."""
    value = 0
    for at, df in term.get("df", []):
        if at <= commit:
            value = df
    return value


def idf(n: int, df: int) -> float:
    return float(np.log(1 + (n - df + 0.5) / (df + 0.5)))  # as lexical.LexicalIndex: the same float
