"""The catalogue: the local engine's SQLite database (`legalsearch.sqlite`), its connections and its schema.

The schema is a list of numbered migrations, each applied once, in one transaction, and recorded in SQLite's
`PRAGMA user_version` (the number of the last one applied):

    1  the tables of index format 4 (laws, articles, chunks, segments, deleted, sources, norms, syncs, commits)
    2  `digests`: the sha256 of each law's rows, checked by `info --verify`
    3  `pulled`: the release steps a follower applied (series, sequence, when, the manifest's sha256; release.py)

A new column is one new migration appended here (an `ALTER TABLE`), never a rewrite of the whole index. A
catalogue written before migrations were numbered (`user_version` 0 but tables present) is recognised by its
tables as being at the step they show. A catalogue whose `user_version` is past the last migration this code
knows was written by a newer legalsearch: refused, with one line.

`writes.py` holds the SQL a writer runs, `reads.py` the query side's.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..errors import IndexFormatError

DATABASE = "legalsearch.sqlite"


@dataclass(frozen=True)
class Migration:
    number: int
    what: str
    statements: tuple[str, ...]
    marks: str  # a table whose presence shows this step was taken (catalogues from before `user_version`)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "the tables of index format 4",
        (
            """CREATE TABLE laws (
    boe_id TEXT PRIMARY KEY, title TEXT NOT NULL, rango TEXT, departamento TEXT, fecha_disposicion TEXT,
    fecha_publicacion TEXT, fecha_vigencia TEXT, fecha_actualizacion TEXT, eli_url TEXT, status TEXT,
    materias TEXT NOT NULL DEFAULT '[]', referencias TEXT NOT NULL DEFAULT '{}', source_format TEXT, origin TEXT,
    source_sha256 TEXT
)""",
            """CREATE TABLE articles (
    id INTEGER PRIMARY KEY, boe_id TEXT NOT NULL REFERENCES laws(boe_id), article_id TEXT NOT NULL,
    position INTEGER NOT NULL, kind TEXT NOT NULL, number TEXT, heading TEXT NOT NULL, path TEXT NOT NULL,
    text TEXT NOT NULL, url TEXT NOT NULL, anchor TEXT NOT NULL, notes TEXT NOT NULL, version_date TEXT,
    version_published TEXT, version_norma TEXT, version_until TEXT, status TEXT NOT NULL DEFAULT 'vigente',
    wording TEXT NOT NULL, content_hash TEXT NOT NULL, UNIQUE (boe_id, article_id, wording)
)""",
            """CREATE TABLE chunks (
    row INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, boe_id TEXT NOT NULL, article_id TEXT NOT NULL,
    wording TEXT NOT NULL, part INTEGER NOT NULL, text TEXT NOT NULL, content_hash TEXT NOT NULL
)""",
            "CREATE INDEX chunks_article ON chunks (boe_id, article_id, wording)",
            "CREATE INDEX articles_law ON articles (boe_id)",
            "CREATE INDEX chunks_hash ON chunks (content_hash)",
            "CREATE TABLE segments (name TEXT PRIMARY KEY, base_row INTEGER NOT NULL, rows INTEGER NOT NULL, "
            "created TEXT NOT NULL)",
            "CREATE TABLE deleted (row INTEGER PRIMARY KEY)",
            "CREATE TABLE sources (label TEXT PRIMARY KEY, record TEXT NOT NULL)",
            """CREATE TABLE norms (
    boe_id TEXT PRIMARY KEY, fecha_actualizacion TEXT, state TEXT NOT NULL, checked TEXT NOT NULL, error TEXT
)""",
            "CREATE TABLE syncs (id INTEGER PRIMARY KEY, at TEXT NOT NULL, report TEXT NOT NULL)",
            """CREATE TABLE commits (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, segment TEXT, laws_added TEXT NOT NULL,
    laws_removed TEXT NOT NULL, chunks_added INTEGER NOT NULL, chunks_deleted INTEGER NOT NULL,
    embedded INTEGER NOT NULL, counts TEXT NOT NULL
)""",
        ),
        "commits",
    ),
    Migration(
        2,
        "each law's digest (info --verify)",
        ("CREATE TABLE digests (boe_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL)",),
        "digests",
    ),
    Migration(
        3,
        "a follower's log of the release steps it applied (pull)",
        (
            "CREATE TABLE IF NOT EXISTS pulled (id INTEGER PRIMARY KEY, series TEXT NOT NULL, "
            "sequence INTEGER NOT NULL, at TEXT NOT NULL, manifest_sha256 TEXT NOT NULL)",
        ),
        "pulled",
    ),
)
LATEST = MIGRATIONS[-1].number


def pause(stage: str) -> None:
    """A test hook: with LEGALSEARCH_KILL_AT=<stage>, the process kills itself there (kill -9 tests)."""
    if os.environ.get("LEGALSEARCH_KILL_AT") == stage:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


# --- connections ------------------------------------------------------------------------------------------------


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection in autocommit mode (a reader opens its own transactions). On storage nothing can
    write (a read-only mount, a folder this user may not write) where no `-wal` is left to read, SQLite could not
    create the files WAL mode reads beside the database: the file is opened as immutable, which it is there."""
    path = Path(path)
    flags = "mode=ro&immutable=1" if _unwritable(path) else "mode=ro"
    connection = sqlite3.connect(
        f"{path.resolve().as_uri()}?{flags}", uri=True, check_same_thread=False, isolation_level=None
    )
    connection.row_factory = sqlite3.Row
    return connection


def _unwritable(database: Path) -> bool:
    folder = database.resolve().parent
    return not os.access(folder, os.W_OK) and not Path(f"{database.resolve()}-wal").exists()


def open_writer(path: Path) -> sqlite3.Connection:
    """A connection for a writer (autocommit: it opens its own `BEGIN IMMEDIATE` transactions), WAL mode, full
    fsync, the schema brought to `LATEST` (an empty database gets every migration)."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.row_factory = sqlite3.Row
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        migrate(connection, Path(path))
    except BaseException:
        connection.close()
        raise
    return connection


# --- the schema ---------------------------------------------------------------------------------------------------


def tables(connection: sqlite3.Connection, schema: str = "main") -> set[str]:
    return {r[0] for r in connection.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'")}


def version(connection: sqlite3.Connection, path: Path) -> int:
    """The last migration applied: `user_version`, or for a catalogue from before it was recorded, the last step
    whose table is present (0: an empty database). One line for a catalogue of an index format before 4 (its
    tables are another shape: `legalsearch index` rewrites such an index, it is never migrated in place) and for
    one a newer legalsearch wrote."""
    recorded = connection.execute("PRAGMA user_version").fetchone()[0]
    if recorded > LATEST:
        from .. import __version__

        raise IndexFormatError(
            f"{path}: catalogue schema {recorded}, but this legalsearch ({__version__}) knows schema {LATEST}: a "
            "newer legalsearch wrote it; upgrade legalsearch, or rebuild the index with this one into a new --index"
        )
    if recorded:
        return recorded
    present = tables(connection)
    if "laws" in present and MIGRATIONS[0].marks not in present:
        raise IndexFormatError(
            f"{path}: the catalogue of an index format before 4; run `legalsearch index` on the index with its "
            "sources to upgrade it (nothing is embedded again)"
        )
    taken = 0  # the steps taken in order: a later step's table (made outside migrations) skips no earlier one
    for migration in MIGRATIONS:
        if migration.marks not in present:
            break
        taken = migration.number
    return taken


def migrate(connection: sqlite3.Connection, path: Path) -> int:
    """Bring the catalogue to `LATEST`: each migration it lacks in a transaction of its own that records its
    number in `user_version` (killed halfway, the catalogue is as it was before that step); a catalogue from
    before `user_version` was recorded gets its number first. Returns the version now."""
    while True:
        if connection.execute("PRAGMA user_version").fetchone()[0] == LATEST:
            return LATEST
        connection.execute("BEGIN IMMEDIATE")
        try:
            at = version(connection, path)  # under the write lock: another writer may have migrated it meanwhile
            if at < LATEST:
                step = MIGRATIONS[at]
                for statement in step.statements:
                    connection.execute(statement)
                pause(f"migration-{step.number}")
                at = step.number
            connection.execute(f"PRAGMA user_version = {at}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
