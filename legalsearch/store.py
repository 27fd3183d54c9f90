"""The index folder: plain files and SQLite, readable without the code that wrote it, never pickled.

    <index>/manifest.json        format and tool version, model id/revision/dim, dims, FAISS factory per dim,
                                 lexical analysis, chunking, search defaults (what does not change per update)
    <index>/legalsearch.sqlite   the catalogue: laws, articles, chunks (global row, content hash), the segments
                                 the index is made of, deleted rows, sources, the log of commits (WAL mode)
    <index>/segments/<name>/     immutable segments (segments.py): vectors, FAISS per dim, BM25 postings

An update writes a new segment with the chunks of the laws it adds or changes, then commits in one SQLite
transaction: the segment joins the catalogue, the rows of replaced or removed laws are marked deleted, the
laws' rows change. That transaction is the commit point: a run killed before it leaves an unlisted segment that
the next writer removes; readers see the previous commit until it ends. Merges (`compact`) fold segments into
one and drop deleted rows. A first build (or a rewrite: new dims, another chunk budget, an old format) writes a
whole index into a temporary sibling folder and renames it into place. One writer at a time: `WriterLock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, catalogue, lexical, segments
from .catalogue import DATABASE, connect, open_writer, pause, writes
from .catalogue.writes import ARTICLE_COLUMNS, LAW_COLUMNS, LAW_JSON, now
from .documents import Article, Chunk, Law
from .errors import IndexFormatError, LegalSearchError, TargetError
from .files import (
    alive,
    full_disk,
    is_full,
    is_read_only,
    read_only,
    seal,
    sha256_file,
    storage_errors,
    write_atomic,
)
from .headings import is_repealed
from .modes import SEARCH_MODES
from .segments import BUILDING_MARKER, FAISS_KINDS, QUANTIZATIONS, Layout, damaged

FORMAT_VERSION = 4
UPGRADABLE_FORMATS = (1, 2, 3)  # read by `legalsearch index` to rewrite them in this format, vectors kept
MANIFEST = "manifest.json"
MARKER = "legalsearch-index"  # the manifest's "format": what makes a folder recognisably a legalsearch index
LEGACY_VECTORS = "vectors.f16.npy"  # formats 1-3: one vector file for the whole index
# Automatic merges (`merge_plan`): past this many segments the small ones are merged; past this share of
# deleted rows everything is.
MAX_SEGMENTS = 8
MAX_DELETED_SHARE = 0.25
LEXICAL_RECORD = {
    "kind": "bm25", "method": "lucene", "k1": lexical.K1, "b": lexical.B, "statistics": "collection-wide, live rows",
    "analysis": "lower case, accents folded, Spanish stopwords, Snowball Spanish stemmer (PyStemmer)",
}  # fmt: skip


@dataclass
class StoredLaw:
    """A law as the index holds it: its metadata, units, chunks and their vectors (full dim)."""

    law: Law
    chunks: list[Chunk]
    vectors: np.ndarray  # (len(chunks), full_dim)
    source_sha256: str | None = None
    tokens: list[list[str]] | None = None  # the chunks as BM25 analyses them, when already known


@dataclass
class IndexContents:
    model: dict
    dims: list[int]
    faiss_kind: str
    max_tokens: int
    quantize: str = "none"
    laws: list[StoredLaw] = field(default_factory=list)
    sources: dict[str, dict] = field(default_factory=dict)  # source label → {"sha256", "laws": [boe_id …]}
    defaults: dict = field(default_factory=dict)
    build: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION  # of the folder it was read from

    @property
    def layout(self) -> Layout:
        return Layout(self.model["dim"], tuple(self.dims), self.faiss_kind, self.quantize)


@dataclass
class Change:
    """What one commit does: laws added or replacing the stored ones of the same boe_id, laws removed, source
    records set or dropped."""

    added: list[StoredLaw] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)
    sources: dict[str, dict] = field(default_factory=dict)
    dropped_sources: set[str] = field(default_factory=set)
    embedded: int = 0
    kind: str = "update"


def _law_from_rows(law_row: sqlite3.Row, article_rows: list[sqlite3.Row]) -> Law:
    present = set(law_row.keys())  # formats before 4 kept no análisis
    values = {c: law_row[c] for c in LAW_COLUMNS if c in present}
    for name in LAW_JSON:
        if name in values:
            values[name] = json.loads(values[name])
    law = Law(**values)
    law.materias = tuple(law.materias)
    present = set(article_rows[0].keys()) if article_rows else set()  # format 1 lacks version_until, wording
    for row in article_rows:
        values = {c: row[c] for c in ARTICLE_COLUMNS if c in present}
        values["path"] = tuple(json.loads(values["path"]))
        values["notes"] = tuple(json.loads(values["notes"]))
        earlier = "wording" in present and row["wording"]
        if "status" not in present:  # format 1 and 2 kept no status: read it from the BOE's own marks
            values["status"] = "derogado" if is_repealed(values["heading"], values["text"]) else "vigente"
        (law.history if earlier else law.articles).append(Article(**values))
    return law


def is_index(folder: Path) -> bool:
    """Whether `folder` is recognisably a legalsearch index: its manifest parses and carries the format marker
    (or, written before the marker existed, a format version and the legalsearch version)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    return manifest.get("format") == MARKER or (
        isinstance(manifest.get("format_version"), int) and "legalsearch_version" in manifest
    )


def check_target(index: Path, sources: list[Path] = ()) -> None:
    """Refuse to write an index at `index` unless it is absent, an empty folder, or a legalsearch index — and
    never a folder that is, or holds, one of the `sources`. Nothing is touched."""
    index = Path(index)
    fix = "choose another --index (an empty or new folder), or move it away yourself"
    if index.is_symlink() and not index.exists():
        raise TargetError(f"{index}: a broken link, not an index; {fix}")
    if index.exists() and not index.is_dir():
        raise TargetError(f"{index}: a file, not an index folder; legalsearch will not replace it; {fix}")
    resolved = index.resolve()
    for source in sources:
        source = Path(source).resolve()
        if source == resolved or resolved in source.parents:
            raise TargetError(
                f"{index}: this folder holds the sources being indexed ({source}); legalsearch will not write "
                f"an index over them; {fix}"
            )
    if index.is_dir() and any(index.iterdir()) and not is_index(index):
        raise TargetError(
            f"{index}: a folder that is not a legalsearch index (no {MANIFEST} with format {MARKER!r}); "
            f"legalsearch only writes into an empty folder or an index it made; {fix}"
        )


# --- one writer at a time ---------------------------------------------------------------------------------


def real_path(index: Path) -> Path:
    """The folder an index path names, links resolved (once, at the start of a run): a writer locks and replaces
    the real folder, never the link."""
    return Path(os.path.realpath(Path(index).expanduser()))


def _storage_error(index: Path, exc: BaseException, needed: int) -> BaseException:
    """One line for a full disk or read-only storage met writing `index`; other errors as they are."""
    if is_full(exc):
        return full_disk(index, needed)
    if is_read_only(exc):
        return read_only(index, Path(getattr(exc, "filename", None) or index), getattr(exc, "strerror", "") or str(exc))
    return exc


class IndexBusy(LegalSearchError):
    """Another process is writing this index."""


class WriterLock:
    """An exclusive lock on writing one index: `.<name>.lock` beside it (the index folder may not exist yet, and
    a rewrite renames it). A second writer is refused at once with one line naming the first. Re-entrant within
    a thread (`sync` holds it around the `index` runs it makes)."""

    _held = threading.local()

    def __init__(self, index: Path) -> None:
        self.index = Path(index)
        real = real_path(self.index)  # through a link: the folder it leads to, whichever way it is named
        self.path = real.parent / f".{real.name}.lock"
        self._file = None
        self._nested = False

    def __enter__(self) -> WriterLock:
        held = getattr(WriterLock._held, "paths", None)
        if held is None:
            held = WriterLock._held.paths = set()
        key = self.path
        if key in held:
            self._nested = True
            return self
        self._key = key
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._take()
        except OSError as exc:
            raise _storage_error(self.index, exc, 64) from None
        held.add(self._key)
        return self

    def _take(self) -> None:
        """Open and lock the lock file; the one still at its path (a writer that finished removed its own)."""
        while True:
            self._file = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held as long as the lock)
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._file.seek(0)
                holder = self._file.read().strip() or "another process"
                self._file.close()
                raise IndexBusy(
                    f"{self.index}: another legalsearch is writing this index (pid {holder}); wait for it to finish "
                    "and run again"
                ) from None
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(self._file.fileno()).st_ino:
                break
            self._file.close()  # locked a file its writer removed as it finished: take the one there now
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def __exit__(self, *exc) -> None:
        if self._nested:
            return
        WriterLock._held.paths.discard(self._key)
        if self._file is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # removed while still locked: nothing of this run is left beside the index
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


# --- reading the manifest and the catalogue ----------------------------------------------------------------


def _manifest_problem(manifest: object) -> str | None:
    """What is wrong with the shape of a manifest (None: nothing)."""
    if not isinstance(manifest, dict):
        return f"holds {type(manifest).__name__}, not an object"
    expected = {
        "format_version": int, "legalsearch_version": str, "model": dict, "dims": list, "faiss": dict,
        "chunking": dict,
    }  # fmt: skip
    if manifest.get("format_version") != FORMAT_VERSION:  # the old formats kept counts and files in the manifest
        expected |= {"counts": dict, "files": dict}
    for key, kind in expected.items():
        if not isinstance(manifest.get(key), kind):
            return f"{key!r} is missing or not {kind.__name__}"
    model = manifest["model"]
    if not isinstance(model.get("id"), str) or not isinstance(model.get("dim"), int) or model["dim"] <= 0:
        return "'model' lacks its id or dim"
    dims = manifest["dims"]
    if not dims or not all(isinstance(d, int) and 0 < d <= model["dim"] for d in dims):
        return f"'dims' {dims!r} are not dims of a {model['dim']}-dim model"
    if "counts" in expected:
        for key in ("laws", "articles", "chunks"):
            if not isinstance(manifest["counts"].get(key), int) or manifest["counts"][key] < 0:
                return f"'counts' lacks {key}"
    if (
        manifest["faiss"].get("kind") not in FAISS_KINDS
        or manifest["faiss"].get("quantize", "none") not in QUANTIZATIONS
    ):
        return "'faiss' names an unknown kind or quantization"
    if not isinstance(manifest["chunking"].get("max_tokens"), int):
        return "'chunking' lacks max_tokens"
    problem = _defaults_problem(manifest.get("defaults", {}), model["dim"])
    if problem:
        return problem
    for name, meta in manifest.get("files", {}).items():
        if (
            not isinstance(meta, dict)
            or not isinstance(meta.get("bytes"), int)
            or not isinstance(meta.get("sha256"), str)
        ):
            return f"'files' entry {name!r} lacks bytes or sha256"
        if name.startswith(("/", "..")) or ".." in Path(name).parts:
            return f"'files' entry {name!r} points outside the index"
    return None


def _number(value: object, low: float = 0.0) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value >= low


def _count(value: object, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _defaults_problem(defaults: object, full_dim: int) -> str | None:
    """What is wrong with the manifest's search `defaults` (None: nothing): every value this code reads must have
    the type and range it expects (keys it does not know are left alone)."""
    if not isinstance(defaults, dict):
        return f"'defaults' is {json.dumps(defaults)[:40]}, not an object"
    checks = {
        "mode": lambda v: v in SEARCH_MODES,
        "dim": lambda v: _count(v) and v <= full_dim,
        "k": _count,
        "hybrid_weights": lambda v: isinstance(v, dict) and all(_number(v.get(s, 1.0)) for s in ("dense", "lexical")),
        "funnel_dim": lambda v: _count(v) and v <= full_dim,
        "funnel_shortlist": _count,
        "hybrid_funnel_above": lambda v: _count(v, 0),
        "lexicon_weight": _number,
        "time_detection": lambda v: isinstance(v, bool),
        "priors": lambda v: isinstance(v, dict) and all(_number(x) for x in v.values()),
        "calibration": lambda v: isinstance(v, dict),
        "match_cosine": lambda v: _number(v, -1.0) or (isinstance(v, dict) and all(_number(x, -1) for x in v.values())),
    }  # fmt: skip
    for key, valid in checks.items():
        if key in defaults and not valid(defaults[key]):
            return f"'defaults.{key}' is {str(json.dumps(defaults[key]))[:40]}, not a value it can take"
    return None


def read_manifest(index: Path, upgrade: bool = False) -> dict:
    """The manifest of an index folder, checked, with the catalogue's facts (counts, segments, sources, commit,
    files) filled in: exists, parses, has the shape this code reads, a format this code reads (or, with
    `upgrade`, one it can rewrite)."""
    path = index / MANIFEST
    if not index.exists():
        raise IndexFormatError(f"{index}: no index here; build one with `legalsearch index SOURCE… --index {index}`")
    if not path.exists():
        raise IndexFormatError(f"{index}: not a legalsearch index (no {MANIFEST}); rebuild it with `legalsearch index`")
    for name in (MANIFEST, DATABASE):  # a link leading out of the index is never read or written through
        segments.inside(index, name, index, f"its {name}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path}: unreadable ({exc}); rebuild the index into a new --index") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if upgrade and version in UPGRADABLE_FORMATS:
        pass
    elif version in UPGRADABLE_FORMATS:
        raise IndexFormatError(
            f"{index}: index format {version}; upgrade it to format {FORMAT_VERSION} by running `legalsearch index` "
            f"on it again with its sources (nothing is embedded again)"
        )
    elif isinstance(version, int) and version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{index}: index format {version} but this legalsearch ({__version__}) reads format {FORMAT_VERSION}; "
            "upgrade legalsearch, or rebuild the index with this one into a new --index"
        )
    problem = _manifest_problem(manifest)
    if problem:
        raise IndexFormatError(
            f"{path}: not a valid legalsearch manifest ({problem}); rebuild the index into a new --index"
        )
    manifest.setdefault("defaults", {})
    if version == FORMAT_VERSION:
        manifest.update(catalogue_facts(index))
    for name, meta in manifest["files"].items():
        file = segments.inside(index, name, path)
        if not file.exists():
            raise IndexFormatError(f"{index}: {name} is missing; rebuild the index into a new --index")
        if file.stat().st_size != meta["bytes"]:
            raise IndexFormatError(
                f"{file}: {file.stat().st_size} bytes, the manifest says {meta['bytes']}; the index is damaged: "
                "rebuild it into a new --index"
            )
    return manifest


def _check_database(path: Path) -> None:
    """That `path` is an SQLite database this process can read, asked of SQLite itself: a process that holds
    connections to a database must never open its file any other way (closing that descriptor drops the
    process's POSIX locks on it, and a writer elsewhere then deletes the `-wal` under its live readers)."""
    if not path.is_file():
        raise damaged(path, "missing" if not path.exists() else "not a file")
    try:
        connection = connect(path)
        try:
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise damaged(path, f"not a readable SQLite database ({exc})") from None


def catalogue_facts(index: Path, connection: sqlite3.Connection | None = None) -> dict:
    """What the catalogue says of the index now (or as `connection`'s open transaction sees it): the last
    commit, counts, segments with their deleted rows, sources, and every segment file."""
    database = index / DATABASE
    own = connection is None
    if own and not database.is_file():
        raise damaged(database, "missing" if not database.exists() else "not a file")
    try:
        connection = connection or connect(database)
        catalogue.version(connection, database)  # one written by a newer legalsearch is refused
        last = connection.execute("SELECT * FROM commits ORDER BY id DESC LIMIT 1").fetchone()
        first = connection.execute("SELECT at FROM commits ORDER BY id LIMIT 1").fetchone()
        listed = connection.execute("SELECT name, base_row, rows FROM segments ORDER BY base_row").fetchall()
        deleted = dict(
            connection.execute(
                "SELECT s.name, COUNT(d.row) FROM segments s JOIN deleted d "
                "ON d.row >= s.base_row AND d.row < s.base_row + s.rows GROUP BY s.name"
            ).fetchall()
        )
        sources = {r[0]: json.loads(r[1]) for r in connection.execute("SELECT label, record FROM sources")}
    except (sqlite3.DatabaseError, ValueError) as exc:
        raise damaged(database, f"unreadable database ({exc})") from None
    finally:
        if own and connection is not None:
            connection.close()
    if last is None:
        raise damaged(database, "a catalogue without a commit")
    files: dict[str, dict] = {}
    parts = []
    end = 0
    for name, base, rows in listed:
        if not isinstance(base, int) or not isinstance(rows, int) or base < end or rows < 0:
            raise damaged(database, f"segment rows out of range ({str(name)[:80]!r}: base {base}, {rows} rows)")
        end = base + rows
        record = _segment_record(segments.segment_folder(index, name, database))
        files.update({f"{segments.FOLDER}/{name}/{f}": meta for f, meta in record["files"].items()})
        parts.append({"name": name, "base_row": base, "rows": rows, "deleted": deleted.get(name, 0)})
    return {
        "commit": last["id"],
        "updated": last["at"],
        "created": first["at"],
        "counts": json.loads(last["counts"]),
        "segments": parts,
        "sources": sources,
        "files": files,
    }


def _segment_record(folder: Path) -> dict:
    path = folder / segments.SEGMENT_MANIFEST
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise damaged(path, f"unreadable ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise damaged(path, "not a segment record")
    for name in record["files"]:
        segments.inside(folder, name, path)
    return record


def check_files(index: Path, manifest: dict) -> None:
    """The cheap checks every open runs: the database's header and counts, each segment's vectors, FAISS and
    BM25 headers and shapes. Full checksums are `verify_checksums` (`info --verify`): they read every byte."""
    if manifest["format_version"] != FORMAT_VERSION:
        _check_legacy(index, manifest)
        return
    connection = connect(index / DATABASE)
    try:
        chunks = connection.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        laws = connection.execute("SELECT COUNT(*) FROM laws").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise damaged(index / DATABASE, f"unreadable database ({exc})") from None
    finally:
        connection.close()
    counts = manifest["counts"]
    if laws != counts["laws"] or chunks != counts["chunks"]:
        raise damaged(
            index / DATABASE, f"holds {laws} laws and {chunks} chunks, its last commit {counts['laws']} and "
            f"{counts['chunks']}"
        )  # fmt: skip
    layout = layout_of(manifest)
    for part in manifest["segments"]:
        segment = segments.Segment(index / segments.FOLDER / part["name"], layout)
        if segment.rows != part["rows"]:
            raise damaged(segment.folder, f"holds {segment.rows} rows, the catalogue says {part['rows']}")
        lexical.Postings.load(segment.folder / lexical.FOLDER, segment.rows)


def _check_legacy(index: Path, manifest: dict) -> None:
    """Formats 1-3 (read only to be upgraded): the database's header and the vector file's shape."""
    _check_database(index / DATABASE)
    segments.check_npy(index / LEGACY_VECTORS, (manifest["counts"]["chunks"], manifest["model"]["dim"]), np.float16)


def layout_of(manifest: dict) -> Layout:
    return Layout(
        manifest["model"]["dim"], tuple(manifest["dims"]), manifest["faiss"]["kind"],
        manifest["faiss"].get("quantize", "none"),
    )  # fmt: skip


def update_defaults(index: Path, changes: dict) -> dict:
    """Merge `changes` into an index's search defaults, rewriting its manifest atomically; the new manifest."""
    with WriterLock(index), storage_errors(index, lambda: 1 << 16):
        path = index / MANIFEST
        static = json.loads(path.read_text(encoding="utf-8"))
        static.setdefault("defaults", {}).update(changes)
        write_atomic(path, json.dumps(static, ensure_ascii=False, indent=1))
    return read_manifest(index)


def verify_checksums(index: Path, manifest: dict) -> list[str]:
    """Names of the index files whose sha256 differs from their record, and the database if SQLite's own
    integrity check fails or a law's rows no longer match the digest recorded when it was committed (same-size
    corruption of the text: `asilo` → `ASILX`)."""
    bad = [name for name, meta in manifest["files"].items() if sha256_file(index / name) != meta["sha256"]]
    if manifest["format_version"] == FORMAT_VERSION:
        connection = connect(index / DATABASE)
        try:
            connection.execute("BEGIN")  # one commit, whole, whatever a writer commits meanwhile
            if connection.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                bad.append(DATABASE)
            else:
                changed = catalogue_mismatches(connection)
                if changed:
                    listed = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
                    bad.append(f"{DATABASE} (the rows of {listed})")
        except sqlite3.DatabaseError:
            bad.append(DATABASE)
        finally:
            connection.close()
    return bad


# --- reading everything back (a rewrite, an upgrade) -------------------------------------------------------


def load_contents(index: Path) -> IndexContents:
    """Everything an index holds, to write it again (new dims, another chunk budget, an old format)."""
    manifest = read_manifest(index, upgrade=True)
    check_files(index, manifest)
    contents = IndexContents(
        format_version=manifest["format_version"],
        model=manifest["model"],
        dims=manifest["dims"],
        faiss_kind=manifest["faiss"]["kind"],
        max_tokens=manifest["chunking"]["max_tokens"],
        quantize=manifest["faiss"].get("quantize", "none"),
        sources=manifest.get("sources", {}),
        defaults=manifest.get("defaults", {}),
    )
    vectors = row_reader(index, manifest)
    connection = connect(index / DATABASE)
    try:
        for law_row, article_rows, chunk_rows in writes.stored_laws(connection):
            law, chunks, rows = _stored_rows(law_row, article_rows, chunk_rows)
            contents.laws.append(StoredLaw(law, chunks, vectors(rows), law_row["source_sha256"]))
    except sqlite3.DatabaseError as exc:
        raise damaged(index / DATABASE, f"unreadable database ({exc})") from None
    finally:
        connection.close()
    return contents


def _stored_rows(law_row: sqlite3.Row, article_rows: list, chunk_rows: list) -> tuple[Law, list[Chunk], list[int]]:
    """A stored law, its chunks and their global rows."""
    law = _law_from_rows(law_row, article_rows)
    worded = bool(chunk_rows) and "wording" in set(chunk_rows[0].keys())
    chunks = [
        Chunk(
            r["chunk_id"],
            r["boe_id"],
            r["article_id"],
            r["part"],
            r["text"],
            (r["wording"] or None) if worded else None,
        )
        for r in chunk_rows
    ]
    return law, chunks, [r["row"] for r in chunk_rows]


def row_vectors(index: Path, manifest: dict, rows: list[int]) -> np.ndarray:
    """The full-dim vectors (float32) of global chunk `rows`."""
    return row_reader(index, manifest)(rows)


def row_reader(index: Path, manifest: dict) -> Callable[[list[int]], np.ndarray]:
    """A function from global rows to their full-dim vectors (float32), for any format."""
    if manifest["format_version"] != FORMAT_VERSION:
        legacy = np.load(index / LEGACY_VECTORS, mmap_mode="r", allow_pickle=False)
        return lambda rows: np.asarray(legacy[rows], dtype=np.float32)
    layout = layout_of(manifest)
    opened = [
        (part["base_row"], segments.Segment(index / segments.FOLDER / part["name"], layout))
        for part in manifest["segments"]
    ]
    return lambda rows: gather(opened, np.asarray(rows, dtype=np.int64))


def gather(opened: list[tuple[int, segments.Segment]], rows: np.ndarray) -> np.ndarray:
    """The full-dim vectors (float32) of global `rows` from (base row, segment) pairs sorted by base row."""
    out = np.zeros((len(rows), opened[0][1].layout.full_dim if opened else 0), dtype=np.float32)
    for segment, picked, local in segments.by_segment(opened, rows):
        out[picked] = segment.read_rows(local)
    return out


# --- writing ----------------------------------------------------------------------------------------------


def static_manifest(contents: IndexContents, created: str | None = None) -> dict:
    """The manifest.json of a format-4 index: what stays the same from one commit to the next."""
    return {
        "format": MARKER,
        "format_version": FORMAT_VERSION,
        "legalsearch_version": __version__,
        "model": contents.model,
        "dims": contents.dims,
        "faiss": {
            "kind": contents.faiss_kind,
            "quantize": contents.quantize,
            "factory": {str(d): segments.factory(contents.faiss_kind, contents.quantize, d) for d in contents.dims},
            "metric": "hamming, rescored by inner product" if contents.quantize == "binary" else "inner_product",
        },
        "lexical": LEXICAL_RECORD,
        "chunking": {"max_tokens": contents.max_tokens},
        "defaults": contents.defaults,
        "created": created or now(),
    }


def space_needed(rows: int, text_bytes: int, layout: Layout) -> int:
    """About how many bytes writing `rows` chunks of `text_bytes` of text takes: the vectors, a FAISS file per
    dim, the BM25 postings, the catalogue's rows (articles and chunks, written twice: WAL, then database)."""

    def code_bytes(dim: int) -> int:
        if layout.quantize == "binary":
            return dim // 8
        if layout.quantize == "int8":
            return dim
        return 4 * dim if dim <= segments.HALF_ABOVE else 2 * dim

    per_row = 2 * layout.full_dim + sum(code_bytes(d) for d in layout.dims) + 64
    return rows * per_row + 5 * text_bytes + (1 << 20)


def _text_bytes(laws: list[StoredLaw]) -> int:
    return sum(len(c.text.encode("utf-8")) for s in laws for c in s.chunks)


def write_index(index: Path, contents: IndexContents, on_step=None, kind: str = "build") -> dict:
    """Write `contents` as the whole index at `index` (one segment), atomically: into a temporary sibling, then
    renamed over the old one. The caller holds the `WriterLock`. Returns the manifest as read back. A full disk
    or read-only storage is one `StorageError` line, and the sibling is removed."""
    rows = sum(len(s.chunks) for s in contents.laws)
    with storage_errors(index, lambda: space_needed(rows, _text_bytes(contents.laws), contents.layout)):
        return _write_index(Path(index), contents, on_step, kind)


def _write_index(index: Path, contents: IndexContents, on_step, kind: str) -> dict:
    check_target(index)
    index.parent.mkdir(parents=True, exist_ok=True)
    building = index.parent / f".{index.name}.building-{os.getpid()}"
    _remove_own(building)
    building.mkdir()
    (building / BUILDING_MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        created = None
        if is_index(index):
            try:
                created = json.loads((index / MANIFEST).read_text(encoding="utf-8")).get("created")
            except (OSError, ValueError):
                created = None
        (building / MANIFEST).write_text(
            json.dumps(static_manifest(contents, created), ensure_ascii=False, indent=1), encoding="utf-8"
        )
        connection = open_writer(building / DATABASE)
        try:
            _carry_sync_state(index, connection)
            change = Change(added=contents.laws, sources=contents.sources, embedded=contents.build.get("embedded", 0))
            change.kind = kind
            _commit(building, connection, change, contents.layout, on_step)
        finally:
            connection.close()
        seal(building, BUILDING_MARKER)
        _swap_into_place(building, index)
        return read_manifest(index)
    finally:
        _remove_own(building)


def _carry_sync_state(index: Path, connection: sqlite3.Connection) -> None:
    """A rewrite keeps what `sync` recorded in the previous catalogue (the norms' states, the log of syncs)."""
    previous = index / DATABASE
    if not previous.is_file() or not is_index(index):
        return
    writes.carry_sync_state(connection, str(previous))


def commit(index: Path, change: Change, on_step=None) -> dict:
    """Apply `change` to the index at `index` in place: a new segment with the added laws' chunks, then one
    transaction. The caller holds the `WriterLock`. Returns the manifest as read back. A full disk or read-only
    storage is one `StorageError` line; the segment begun is removed, the transaction rolled back."""
    manifest = read_manifest(index)
    layout = layout_of(manifest)
    rows = sum(len(s.chunks) for s in change.added)
    with storage_errors(index, lambda: space_needed(rows, _text_bytes(change.added), layout)):
        connection = open_writer(index / DATABASE)
        try:
            _commit(index, connection, change, layout, on_step)
        finally:
            connection.close()
    return read_manifest(index)


def _commit(index: Path, connection: sqlite3.Connection, change: Change, layout: Layout, on_step) -> None:
    chunks = [c for s in change.added for c in s.chunks]
    record = None
    if chunks:
        vectors = np.concatenate([s.vectors for s in change.added])
        postings = None
        if all(s.tokens is not None for s in change.added):  # analysed while the model embedded
            postings = lexical.Postings.from_tokens([t for s in change.added for t in s.tokens])
        record = segments.write(index, vectors, [c.text for c in chunks], layout, on_step=on_step, postings=postings)
    pause("segment-written")
    try:
        connection.execute("BEGIN IMMEDIATE")
        base = writes.next_base_row(connection)
        replaced = {s.law.boe_id for s in change.added} | set(change.removed)
        deleted = writes.delete_laws(connection, replaced)
        if record is not None:
            writes.add_segment(connection, record["name"], base, record["rows"])
        writes.insert_laws(connection, change.added, base)
        writes.record_sources(connection, change.sources, change.dropped_sources)
        stored = set(change.removed) - {s.law.boe_id for s in change.added}
        writes.log_commit(connection, change.kind, record, [s.law.boe_id for s in change.added], sorted(stored),
                          len(chunks), deleted, change.embedded)  # fmt: skip
        pause("before-commit")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        if record is not None:
            shutil.rmtree(index / segments.FOLDER / record["name"], ignore_errors=True)
        raise
    pause("committed")


# the catalogue's write SQL lives in catalogue/writes.py; these names stay for the code that used them here
catalogue_mismatches = writes.digest_mismatches
law_digest = writes.law_digest
_delete_laws = writes.delete_laws
_insert_laws = writes.insert_laws
_log_commit = writes.log_commit


# --- merging segments ---------------------------------------------------------------------------------------


_live_rows = writes.live_rows


def merge_plan(parts: list[dict], everything: bool = False) -> list[str]:
    """Names of the segments to merge: all of them when asked or when deleted rows pass `MAX_DELETED_SHARE`;
    past `MAX_SEGMENTS`, all but the largest (a daily update merges small segments, not the bulk), or all when
    the small ones together outgrow it; none otherwise."""
    rows = sum(p["rows"] for p in parts)
    deleted = sum(p["deleted"] for p in parts)
    if everything or (rows and deleted / rows > MAX_DELETED_SHARE):
        return [p["name"] for p in parts] if len(parts) > 1 or deleted else []
    if len(parts) <= MAX_SEGMENTS:
        return []
    largest = max(parts, key=lambda p: p["rows"] - p["deleted"])
    small = [p for p in parts if p is not largest]
    if sum(p["rows"] - p["deleted"] for p in small) > largest["rows"] - largest["deleted"]:
        return [p["name"] for p in parts]
    return [p["name"] for p in small]


def compact(index: Path, everything: bool = True, on_step=None) -> dict | None:
    """Merge segments (all, or what `merge_plan` picks) into one, dropping deleted rows; one transaction
    renumbers their chunks. The caller holds the `WriterLock`. The merged segments' folders are removed after
    the commit (readers that hold them open keep reading them). Returns what was done, or None."""
    manifest = read_manifest(index)
    names = merge_plan(manifest["segments"], everything)
    if not names:
        return None
    rows = sum(p["rows"] - p["deleted"] for p in manifest["segments"] if p["name"] in names)
    with storage_errors(index, lambda: space_needed(rows, 0, layout_of(manifest))):
        return _compact(index, manifest, names, on_step)


def _compact(index: Path, manifest: dict, names: list[str], on_step) -> dict:
    started = time.perf_counter()
    layout = layout_of(manifest)
    chosen = [p for p in manifest["segments"] if p["name"] in names]
    connection = open_writer(index / DATABASE)
    try:
        live_rows = [_live_rows(connection, p["base_row"], p["rows"]) for p in chosen]
        kept = [
            (segments.Segment(index / segments.FOLDER / p["name"], layout), rows - p["base_row"])
            for p, rows in zip(chosen, live_rows, strict=True)
        ]
        record = segments.merge(index, kept, layout, on_step=on_step)  # each component merges its own files
        pause("segment-written")
        everything_merged = len(chosen) == len(manifest["segments"])
        try:
            connection.execute("BEGIN IMMEDIATE")
            base = 0 if everything_merged else connection.execute(
                "SELECT COALESCE(MAX(base_row + rows), 0) FROM segments"
            ).fetchone()[0]  # fmt: skip
            old = np.concatenate(live_rows) if live_rows else np.zeros(0, np.int64)
            new = np.arange(len(old), dtype=np.int64) + base
            # ascending: with base 0 a row only moves down, onto a row already moved or merged away
            connection.executemany(
                "UPDATE chunks SET row = ? WHERE row = ?", zip(new.tolist(), old.tolist(), strict=True)
            )
            for p in chosen:
                connection.execute("DELETE FROM segments WHERE name = ?", (p["name"],))
                connection.execute(
                    "DELETE FROM deleted WHERE row >= ? AND row < ?", (p["base_row"], p["base_row"] + p["rows"])
                )
            connection.execute(
                "INSERT INTO segments VALUES (?, ?, ?, ?)", (record["name"], base, record["rows"], now())
            )
            _log_commit(connection, "compact", record, [], [], 0, 0, 0)
            pause("before-commit")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            shutil.rmtree(index / segments.FOLDER / record["name"], ignore_errors=True)
            raise
    finally:
        connection.close()
    pause("committed")
    for p in chosen:
        shutil.rmtree(index / segments.FOLDER / p["name"], ignore_errors=True)
    return {"merged": len(chosen), "rows": record["rows"], "seconds": round(time.perf_counter() - started, 3)}


# --- crashes ----------------------------------------------------------------------------------------------


_alive = alive  # the name release.py, publish.py and the Qdrant writer use


def _made_by_us(folder: Path) -> bool:
    """Whether a leftover folder beside an index is recognisably legalsearch's: a build in progress carries
    `BUILDING_MARKER`; a retired previous index is an index."""
    return folder.is_dir() and not folder.is_symlink() and ((folder / BUILDING_MARKER).is_file() or is_index(folder))


def _remove_own(folder: Path) -> None:
    """Remove `folder` if legalsearch made it; anything else there is left as it is."""
    if folder.exists() and _made_by_us(folder):
        shutil.rmtree(folder, ignore_errors=True)


def tidy(index: Path) -> None:
    """Remove what killed runs left (the caller holds the `WriterLock`): builds beside `index` and segments
    inside it that no commit names, only what legalsearch recognisably made; if a rewrite died between its two
    renames, put the previous index back."""
    if not index.parent.is_dir():
        return
    for leftover in index.parent.glob(f".{index.name}.*-*"):
        kind, _, pid = leftover.name.rpartition("-")
        if kind not in (f".{index.name}.building", f".{index.name}.old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if not _made_by_us(leftover):
            continue
        if kind.endswith(".old") and not index.exists() and is_index(leftover):
            leftover.rename(index)
        else:
            shutil.rmtree(leftover, ignore_errors=True)
    if (index / DATABASE).is_file() and segments.stays_inside(index, DATABASE) and is_index(index):
        try:
            connection = connect(index / DATABASE)
            try:
                listed = {r[0] for r in connection.execute("SELECT name FROM segments")}
            finally:
                connection.close()
        except sqlite3.DatabaseError:
            return
        segments.remove_unlisted(index, listed, _alive)


def _swap_into_place(building: Path, index: Path) -> None:
    if not index.exists():
        building.rename(index)
        return
    if not is_index(index):  # an empty folder the user named: it may become the index
        index.rmdir()
        building.rename(index)
        return
    retired = index.parent / f".{index.name}.old-{os.getpid()}"
    _remove_own(retired)
    index.rename(retired)
    try:
        building.rename(index)
    except OSError:
        retired.rename(index)  # put the previous index back
        raise
    shutil.rmtree(retired, ignore_errors=True)
