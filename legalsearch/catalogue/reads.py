"""The query side's SQL over the catalogue (the local engine's `Reader`): every read a search, a hit, a filter or
a page makes, against one connection whose read transaction holds one commit. Rows come back as dicts with JSON
columns decoded, the shapes `engines.base.Reader` documents."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

import numpy as np

from ..errors import QueryError
from ..filters import Filters
from ..folding import fold

# A unit counts as repealed when the BOE marks it so, when its whole law is repealed, or when the wording in force
# reached its end date (fecha_caducidad) after the index was built. Needs `a` (articles) and `l` (laws).
REPEALED_SQL = (
    "(a.status = 'derogado' OR l.status = 'derogada' "
    "OR (a.wording = '' AND a.version_until IS NOT NULL AND a.version_until <= date('now')))"
)
# The day a unit's wording came into force: its own date, else (a consolidated text without wording dates) the
# law's entry into force or publication: an `as_of` day before the law existed finds none of its units.
IN_FORCE_FROM_SQL = "COALESCE(a.version_date, l.fecha_vigencia, l.fecha_publicacion)"
UNIT_SQL = (
    f"SELECT a.*, l.title AS law_title, l.rango, l.source_format, {REPEALED_SQL} AS repealed, "
    f"{IN_FORCE_FROM_SQL} AS in_force_from FROM articles a JOIN laws l USING (boe_id)"
)
LAW_JSON = ("materias", "referencias")
UNIT_JSON = ("path", "notes")


def some(values: Sequence[str], shown: int = 3) -> str:
    """ "A, B, C and 197 more": an error names a few of what was asked, never all of a long list."""
    more = len(values) - shown
    return ", ".join(values[:shown]) + (f" and {more} more" if more > 0 else "")


def _marks(values: Sequence) -> str:
    return ", ".join("?" * len(values))


def _law(row: sqlite3.Row) -> dict:
    law = dict(row)
    for name in LAW_JSON:
        if name in law:
            law[name] = json.loads(law[name])
    return law


def _unit(row: sqlite3.Row) -> dict:
    unit = dict(row)
    for name in UNIT_JSON:
        if name in unit:
            unit[name] = json.loads(unit[name])
    if "repealed" in unit:
        unit["repealed"] = bool(unit["repealed"])
    return unit


# --- what a search may return --------------------------------------------------------------------------------
def _known_laws(db: sqlite3.Connection, asked: Sequence[str]) -> list[str]:
    known = {r[0] for r in db.execute("SELECT boe_id FROM laws")}
    unknown = [b for b in asked if b not in known]
    if unknown:
        listed = ", ".join(sorted(known)[:12]) + (" …" if len(known) > 12 else "")
        raise QueryError(f"law {some(unknown)} is not in this index; it holds {listed}")
    return list(asked)


def known_values(asked: Sequence[str], held: set[str], what: str) -> list[str]:
    """The values of `held` that `asked` names, compared accent- and case-folded; `QueryError` for one the index
    does not hold (how every engine checks rangos and materias)."""
    by_fold = {fold(v): v for v in held}
    unknown = [v for v in asked if fold(v) not in by_fold]
    if unknown:
        if what == "rango":
            raise QueryError(f"rango {some(unknown)} not in this index; choose among {', '.join(sorted(held))}")
        known = ", ".join(sorted(held)[:12]) + (" …" if len(held) > 12 else "") or "none"
        raise QueryError(f"{what} {some(unknown)} not in this index; it holds {known}")
    return [by_fold[fold(v)] for v in asked]


def rangos(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT DISTINCT rango FROM laws WHERE rango IS NOT NULL")}


def materias(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT DISTINCT m.value FROM laws, json_each(laws.materias) m")}


def allowed_rows(db: sqlite3.Connection, filters: Filters) -> np.ndarray:
    """The chunk rows `filters` allow (ascending): with `as_of` the wordings in force that day, else those in
    force now."""
    where, args = [], []
    if filters.laws:
        where.append(f"l.boe_id IN ({_marks(filters.laws)})")
        args += _known_laws(db, filters.laws)
    if filters.rangos:
        where.append(f"l.rango IN ({_marks(filters.rangos)})")
        args += known_values(filters.rangos, rangos(db), "rango")
    if filters.materias:
        chosen = known_values(filters.materias, materias(db), "materia")
        where.append(f"EXISTS (SELECT 1 FROM json_each(l.materias) m WHERE m.value IN ({_marks(chosen)}))")
        args += chosen
    kinds = filters.unit_kinds()
    if kinds:
        where.append(f"a.kind IN ({_marks(kinds)})")
        args += kinds
    if filters.vigentes:
        where.append(f"NOT {REPEALED_SQL}")
    if filters.as_of:
        where.append(
            f"({IN_FORCE_FROM_SQL} IS NULL OR {IN_FORCE_FROM_SQL} <= ?) "
            "AND (a.version_until IS NULL OR ? < a.version_until)"
        )
        args += [filters.as_of, filters.as_of]
    else:
        where.append("a.wording = ''")
    rows = db.execute(
        "SELECT c.row FROM chunks c JOIN articles a USING (boe_id, article_id, wording) JOIN laws l USING (boe_id) "
        f"WHERE {' AND '.join(where)} ORDER BY c.row",
        args,
    )
    return np.fromiter((r[0] for r in rows), dtype=np.int64)


def chunk_owners(db: sqlite3.Connection) -> np.ndarray:
    """(row, unit key) of every chunk, as an (n, 2) int64 array."""
    pairs = db.execute(
        "SELECT c.row, a.id FROM chunks c JOIN articles a USING (boe_id, article_id, wording)"
    ).fetchall()
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


# --- what hits show -------------------------------------------------------------------------------------------
def units(db: sqlite3.Connection, keys: Sequence[int]) -> dict[int, dict]:
    found: dict[int, dict] = {}
    keys = list(dict.fromkeys(int(k) for k in keys))
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        for row in db.execute(f"{UNIT_SQL} WHERE a.id IN ({_marks(batch)})", batch):
            found[row["id"]] = _unit(row)
    return found


def chunks(db: sqlite3.Connection, rows: Sequence[int]) -> dict[int, dict]:
    found: dict[int, dict] = {}
    rows = list(dict.fromkeys(int(r) for r in rows))
    for start in range(0, len(rows), 500):
        batch = rows[start : start + 500]
        for row in db.execute(
            f"SELECT row, part, text, boe_id, article_id, wording FROM chunks WHERE row IN ({_marks(batch)})", batch
        ):
            found[row["row"]] = dict(row)
    return found


def unit_chunks(db: sqlite3.Connection, boe_id: str, article_ids: Sequence[str] | None) -> list[tuple]:
    if article_ids is None:
        where, args = "a.kind = 'articulo' AND a.article_id LIKE 'a%-a%'", [boe_id]
    else:
        where, args = f"a.article_id IN ({_marks(article_ids)})", [boe_id, *article_ids]
    return [
        tuple(r)
        for r in db.execute(
            "SELECT a.id, a.article_id, a.wording, c.row FROM articles a "
            f"JOIN chunks c USING (boe_id, article_id, wording) WHERE a.boe_id = ? AND {where} "
            "ORDER BY a.wording != '', c.row",
            args,
        )
    ]


# --- browsing -------------------------------------------------------------------------------------------------
def titles(db: sqlite3.Connection) -> dict[str, str]:
    return {r[0]: r[1] for r in db.execute("SELECT boe_id, title FROM laws")}


def laws(db: sqlite3.Connection) -> list[dict]:
    rows = db.execute(
        "SELECT l.*, COUNT(a.id) AS articles FROM laws l LEFT JOIN articles a ON a.boe_id = l.boe_id "
        "AND a.wording = '' GROUP BY l.boe_id ORDER BY l.rowid"
    )
    return [_law(row) for row in rows]


def law(db: sqlite3.Connection, boe_id: str) -> dict | None:
    row = db.execute("SELECT * FROM laws WHERE boe_id = ?", (boe_id,)).fetchone()
    return None if row is None else _law(row)


def units_in_force(db: sqlite3.Connection, boe_id: str) -> list[dict]:
    rows = db.execute(
        "SELECT article_id, kind, number, heading, path, url FROM articles WHERE boe_id = ? AND wording = '' "
        "ORDER BY position",
        (boe_id,),
    )
    return [_unit(row) for row in rows]


def wordings(db: sqlite3.Connection, boe_id: str, article_id: str) -> list[dict]:
    rows = db.execute(
        f"{UNIT_SQL} WHERE a.boe_id = ? AND a.article_id = ? ORDER BY a.version_date IS NOT NULL, a.version_date",
        (boe_id, article_id),
    )
    return [_unit(row) for row in rows]


def has_unit(db: sqlite3.Connection, boe_id: str, article_id: str) -> bool:
    query = "SELECT 1 FROM articles WHERE boe_id = ? AND article_id = ? LIMIT 1"
    return db.execute(query, (boe_id, article_id)).fetchone() is not None


def range_units(db: sqlite3.Connection, boe_id: str) -> list[str]:
    rows = db.execute(
        "SELECT DISTINCT article_id FROM articles WHERE boe_id = ? AND kind = 'articulo' AND article_id LIKE 'a%-a%'",
        (boe_id,),
    )
    return [r[0] for r in rows]


def has_earlier_wordings(db: sqlite3.Connection, boe_id: str) -> bool:
    query = "SELECT 1 FROM articles WHERE boe_id = ? AND version_until IS NOT NULL LIMIT 1"
    return db.execute(query, (boe_id,)).fetchone() is not None


def changes(db: sqlite3.Connection, since: str, until: str | None, laws: Sequence[str]) -> list[dict]:
    where, args = ["a.version_date >= ?", "a.version_norma IS NOT NULL", "a.version_norma != a.boe_id"], [since]
    if until is not None:
        where.append("a.version_date <= ?")
        args.append(until)
    if laws:
        where.append(f"a.boe_id IN ({_marks(laws)})")
        args += laws
    rows = db.execute(
        "SELECT a.boe_id, a.article_id, a.heading, a.version_date, a.version_until, a.version_norma, a.url, "
        f"a.wording, l.title FROM articles a JOIN laws l USING (boe_id) WHERE {' AND '.join(where)} "
        "ORDER BY a.version_date DESC, a.boe_id, a.position",
        args,
    )
    return [dict(row) for row in rows]


def article_keys(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT boe_id || '#' || article_id FROM articles")}


def syncs(db: sqlite3.Connection) -> list[tuple[str, dict]]:
    return [(row["at"], json.loads(row["report"])) for row in db.execute("SELECT at, report FROM syncs ORDER BY id")]
