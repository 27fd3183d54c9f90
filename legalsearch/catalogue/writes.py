"""The SQL a writer runs on the catalogue: a commit's rows (laws, units, chunks, digests, the segment, deleted rows,
sources, the commit's log line), a merge's renumbering, what `sync` records (norms, runs), and the reads a writer
makes to plan (the laws held, the rows of known chunk texts, everything held for a rewrite). Each function takes
an open connection; the caller owns the transaction (`BEGIN IMMEDIATE` … `COMMIT`)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields

import numpy as np

from ..documents import Article, Law
from . import tables

LAW_COLUMNS = [f.name for f in fields(Law) if f.name not in ("articles", "history")]
LAW_JSON = ("materias", "referencias")  # stored as JSON text
ARTICLE_COLUMNS = [f.name for f in fields(Article)]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- a commit ---------------------------------------------------------------------------------------------------


def next_base_row(connection: sqlite3.Connection) -> int:
    """The first global row after every segment's."""
    return connection.execute("SELECT COALESCE(MAX(base_row + rows), 0) FROM segments").fetchone()[0]


def add_segment(connection: sqlite3.Connection, name: str, base: int, rows: int) -> None:
    connection.execute("INSERT INTO segments VALUES (?, ?, ?, ?)", (name, base, rows, now()))


def delete_laws(connection: sqlite3.Connection, boe_ids: Iterable[str]) -> int:
    """Remove these laws' rows from the catalogue, their chunks' rows marked deleted; how many rows."""
    total = 0
    for boe_id in sorted(boe_ids):
        connection.execute("DELETE FROM digests WHERE boe_id = ?", (boe_id,))
        connection.execute("INSERT INTO deleted SELECT row FROM chunks WHERE boe_id = ?", (boe_id,))
        total += connection.execute("DELETE FROM chunks WHERE boe_id = ?", (boe_id,)).rowcount
        connection.execute("DELETE FROM articles WHERE boe_id = ?", (boe_id,))
        connection.execute("DELETE FROM laws WHERE boe_id = ?", (boe_id,))
    return total


def insert_laws(connection: sqlite3.Connection, laws: Sequence, base: int) -> None:
    """Insert `laws` (`store.StoredLaw`: the law with its units and chunks) with their chunks at global rows from
    `base` on, each law's digest with it."""
    row = base
    for stored in laws:
        law = stored.law
        connection.execute(
            f"INSERT INTO laws ({', '.join(LAW_COLUMNS)}, source_sha256) "
            f"VALUES ({', '.join('?' * (len(LAW_COLUMNS) + 1))})",
            [json.dumps(getattr(law, c), ensure_ascii=False) if c in LAW_JSON else getattr(law, c) for c in LAW_COLUMNS]
            + [stored.source_sha256],
        )
        connection.executemany(
            "INSERT INTO articles (boe_id, position, content_hash, "
            f"{', '.join(ARTICLE_COLUMNS)}, wording) VALUES ({', '.join('?' * (len(ARTICLE_COLUMNS) + 4))})",
            [
                [law.boe_id, position, article.content_hash]
                + [
                    json.dumps(list(getattr(article, c)), ensure_ascii=False)
                    if c in ("path", "notes")
                    else getattr(article, c)
                    for c in ARTICLE_COLUMNS
                ]
                + [wording]
                for position, (article, wording) in enumerate(
                    [(a, "") for a in law.articles] + [(a, a.version_date) for a in law.history]
                )
            ],
        )
        connection.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (row + i, c.chunk_id, c.boe_id, c.article_id, c.version or "", c.part, c.text, c.content_hash)
                for i, c in enumerate(stored.chunks)
            ],
        )
        row += len(stored.chunks)
        digest = law_digest(connection, law.boe_id)
        connection.execute("INSERT OR REPLACE INTO digests VALUES (?, ?)", (law.boe_id, digest))


def record_sources(connection: sqlite3.Connection, sources: dict[str, dict], dropped: Iterable[str] = ()) -> None:
    """Set the records of these sources (label → {sha256, as_of, laws}); drop those of `dropped`."""
    for label, source in sources.items():
        connection.execute("INSERT OR REPLACE INTO sources VALUES (?, ?)", (label, json.dumps(source)))
    connection.executemany("DELETE FROM sources WHERE label = ?", [(label,) for label in dropped])


def log_commit(connection, kind, record, added, removed, chunks_added, chunks_deleted, embedded) -> None:
    """The commit's line in `commits`, with the counts after it (`record`: the segment written, or None)."""
    counts = {
        "laws": connection.execute("SELECT COUNT(*) FROM laws").fetchone()[0],
        "articles": connection.execute("SELECT COUNT(*) FROM articles WHERE wording = ''").fetchone()[0],
        "earlier_wordings": connection.execute("SELECT COUNT(*) FROM articles WHERE wording != ''").fetchone()[0],
        "chunks": connection.execute("SELECT COUNT(*) FROM chunks").fetchone()[0],
    }
    connection.execute(
        "INSERT INTO commits (at, kind, segment, laws_added, laws_removed, chunks_added, chunks_deleted, embedded, "
        "counts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (now(), kind, record["name"] if record else None, json.dumps(added), json.dumps(removed), chunks_added,
         chunks_deleted, embedded, json.dumps(counts)),
    )  # fmt: skip


# --- digests ----------------------------------------------------------------------------------------------------


def law_digest(connection: sqlite3.Connection, boe_id: str) -> str:
    """The sha256 of one law's rows as the catalogue holds them: its `laws` row, its units (every column but the
    row id, in order) and its chunks (every column but the global row, which merges renumber)."""
    digest = hashlib.sha256()
    queries = (
        "SELECT * FROM laws WHERE boe_id = ?",
        "SELECT * FROM articles WHERE boe_id = ? ORDER BY position, wording",
        "SELECT * FROM chunks WHERE boe_id = ? ORDER BY chunk_id",
    )
    for query, skip in zip(queries, (None, "id", "row"), strict=True):
        for row in connection.execute(query, (boe_id,)):
            values = [value for key, value in zip(row.keys(), row, strict=True) if key != skip]
            digest.update(json.dumps(values, ensure_ascii=False).encode("utf-8") + b"\n")
        digest.update(b"--\n")
    return digest.hexdigest()


def digest_mismatches(connection: sqlite3.Connection) -> list[str]:
    """The laws whose rows no longer match the digest recorded when they were committed (laws committed before
    digests were recorded are not covered)."""
    if "digests" not in tables(connection):
        return []
    recorded = connection.execute("SELECT boe_id, sha256 FROM digests ORDER BY boe_id").fetchall()
    return [boe_id for boe_id, sha256 in recorded if law_digest(connection, boe_id) != sha256]


# --- a merge ----------------------------------------------------------------------------------------------------


def live_rows(connection: sqlite3.Connection, base: int, rows: int) -> np.ndarray:
    """The global rows of a segment's chunks still in the catalogue, ascending."""
    found = connection.execute("SELECT row FROM chunks WHERE row >= ? AND row < ? ORDER BY row", (base, base + rows))
    return np.fromiter((r[0] for r in found), dtype=np.int64)


def renumber(connection: sqlite3.Connection, old: np.ndarray, new: np.ndarray) -> None:
    """Move chunks from global rows `old` to `new` (both ascending; a row only moves down onto a row already
    moved or merged away)."""
    connection.executemany("UPDATE chunks SET row = ? WHERE row = ?", zip(new.tolist(), old.tolist(), strict=True))


def drop_segment(connection: sqlite3.Connection, name: str, base: int, rows: int) -> None:
    """A merged segment leaves the catalogue, and its deleted rows with it."""
    connection.execute("DELETE FROM segments WHERE name = ?", (name,))
    connection.execute("DELETE FROM deleted WHERE row >= ? AND row < ?", (base, base + rows))


# --- a rewrite ----------------------------------------------------------------------------------------------------


def carry_sync_state(connection: sqlite3.Connection, previous: str) -> None:
    """Copy what `sync` recorded (the norms' states, the log of syncs) from the catalogue at `previous` into the
    one `connection` writes (a rewrite)."""
    connection.execute("ATTACH DATABASE ? AS previous", (previous,))
    try:
        held = tables(connection, "previous")
        for table in ("norms", "syncs"):
            if table in held:
                connection.execute(f"INSERT INTO {table} SELECT * FROM previous.{table}")
    finally:
        connection.execute("DETACH DATABASE previous")


def stored_laws(connection: sqlite3.Connection) -> Iterator[tuple[sqlite3.Row, list[sqlite3.Row], list[sqlite3.Row]]]:
    """Every law held, in the order indexed: (its `laws` row, its `articles` rows in order, its `chunks` rows by
    global row) — any index format (a rewrite reads old ones too)."""
    for law_row in connection.execute("SELECT * FROM laws ORDER BY rowid").fetchall():
        boe_id = law_row["boe_id"]
        articles = connection.execute("SELECT * FROM articles WHERE boe_id = ? ORDER BY position", (boe_id,))
        chunk_rows = connection.execute("SELECT * FROM chunks WHERE boe_id = ? ORDER BY row", (boe_id,))
        yield law_row, articles.fetchall(), chunk_rows.fetchall()


# --- what planning reads ------------------------------------------------------------------------------------------


def law_states(connection: sqlite3.Connection, worded: bool = True) -> dict[str, dict]:
    """boe_id → `fecha_actualizacion`, `fecha_publicacion`, `source_format`, `units` (units in force; `worded`
    False: format 1, every unit) of every law held."""
    in_force = " AND a.wording = ''" if worded else ""
    found = connection.execute(
        "SELECT l.boe_id, l.fecha_actualizacion, l.fecha_publicacion, l.source_format, "
        f"(SELECT COUNT(*) FROM articles a WHERE a.boe_id = l.boe_id{in_force}) FROM laws l"
    )
    return {
        row[0]: {"fecha_actualizacion": row[1], "fecha_publicacion": row[2], "source_format": row[3], "units": row[4]}
        for row in found
    }


def rows_of_texts(connection: sqlite3.Connection, content_hashes: Iterable[str]) -> dict[str, int]:
    """content hash → the first global row of a chunk with that text, for the hashes held."""
    pairs: dict[str, int] = {}
    listed = sorted(content_hashes)
    for start in range(0, len(listed), 500):
        batch = listed[start : start + 500]
        for content_hash, row in connection.execute(
            f"SELECT content_hash, MIN(row) FROM chunks WHERE content_hash IN ({', '.join('?' * len(batch))}) "
            "GROUP BY content_hash",
            batch,
        ):
            pairs[content_hash] = row
    return pairs


def laws_held(connection: sqlite3.Connection) -> set[str]:
    return {r[0] for r in connection.execute("SELECT boe_id FROM laws")}


# --- what `sync` remembers ------------------------------------------------------------------------------------------


def norm_states(connection: sqlite3.Connection) -> dict[str, dict]:
    """boe_id → `fecha_actualizacion`, `state`, `checked`, `error` of every norm `sync` recorded."""
    if "norms" not in tables(connection):
        return {}
    rows = connection.execute("SELECT boe_id, fecha_actualizacion, state, checked, error FROM norms")
    return {r["boe_id"]: {k: r[k] for k in ("fecha_actualizacion", "state", "checked", "error")} for r in rows}


def sync_runs(connection: sqlite3.Connection) -> list[tuple[str, dict]]:
    """(at, report) of every `sync` run recorded, oldest first."""
    if "syncs" not in tables(connection):
        return []
    return [(r["at"], json.loads(r["report"])) for r in connection.execute("SELECT at, report FROM syncs ORDER BY id")]


def record_norms(connection: sqlite3.Connection, rows: Sequence[tuple]) -> None:
    """(boe_id, fecha_actualizacion, state, checked, error) rows, replacing those of the same boe_id."""
    connection.executemany("INSERT OR REPLACE INTO norms VALUES (?, ?, ?, ?, ?)", rows)


def log_sync(connection: sqlite3.Connection, at: str, report: dict) -> None:
    connection.execute("INSERT INTO syncs (at, report) VALUES (?, ?)", (at, json.dumps(report)))
