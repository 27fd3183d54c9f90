"""`legalsearch publish`: an index written as a release folder (docs/releases.md) that followers `pull`.

The first publish writes a full release; each later one a delta of the laws the index's commits changed since
the previous publish (or a full release again when a delta would not do: a rewritten index, another model or
chunk budget, a delta over `FULL_SHARE` of the release, a chain of `MAX_CHAIN` deltas). Every part is written
into a hidden folder, flushed and renamed into place; the signed manifest is written last, by rename. Only
folders this code made are ever removed from OUT: parts named neither by the new manifest nor by the one it
replaces. While it runs, publish holds the index's writer lock (a `sync` or `index` waits for it) and the
release folder's own.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, release, store
from .errors import TargetError
from .files import fsync_dir, rename_into_place, seal, sha256_file, storage_errors, write_atomic

MAX_CHAIN = 30  # deltas after a full release before the next publish writes a full one (and the delta)
MAX_DELTAS = 60  # deltas the manifest keeps: a follower that many publishes behind still catches up by deltas
FULL_SHARE = 0.25  # a delta that would ship more than this share of the index's chunks is a full release
EXPIRES_DAYS = 30
BATCH = 4096  # chunks read, rebuilt and written at a time: memory stays bounded whatever the index's size

Progress = Callable[[str, int, int], None]


@dataclass
class PublishReport:
    out: Path
    sequence: int
    kind: str  # "full", "delta" or "empty" (nothing changed since the previous publish: a new expiry)
    reason: str  # why a full release (or "" for a delta)
    path: str  # the part written ("" for an empty delta)
    bytes: int  # of the part written
    rows: int  # chunks shipped
    laws_changed: int = 0
    laws_removed: int = 0
    delta_bytes: int = 0  # of the delta written (also beside a full release)
    full_bytes: int = 0  # of the newest full release
    index_bytes: int = 0  # of the index published
    chunks: int = 0  # in the index
    removed_parts: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --- the release folder ---------------------------------------------------------------------------------------


def check_out(out: Path) -> dict | None:
    """Refuse a release folder that is neither new, empty nor a release folder; the previous manifest's `signed`
    part when there is one (read as written: this publisher's own)."""
    out = Path(out)
    fix = "publish into an empty or new folder, or into a release folder legalsearch wrote"
    if out.is_symlink() and not out.exists():
        raise TargetError(f"{out}: a broken link, not a release folder; {fix}")
    if out.exists() and not out.is_dir():
        raise TargetError(f"{out}: a file, not a release folder; {fix}")
    manifest = out / release.MANIFEST
    if not manifest.exists():
        if out.is_dir() and any(out.iterdir()):
            raise TargetError(f"{out}: a folder that is not a release folder (no {release.MANIFEST}); {fix}")
        return None
    try:
        envelope = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TargetError(f"{manifest}: unreadable ({exc}); {fix}") from None
    signed = envelope.get("signed") if isinstance(envelope, dict) else None
    if not isinstance(signed, dict) or signed.get("format") != release.FORMAT:
        raise TargetError(f"{manifest}: not a legalsearch release manifest; {fix}")
    return release.parse(signed, str(manifest))


def _is_own_part(folder: Path) -> bool:
    """A part folder this code wrote (finished: its part.json; being built: the building marker)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    if (folder / store.BUILDING_MARKER).is_file():
        return True
    try:
        return (
            json.loads((folder / release.PART_MANIFEST).read_text(encoding="utf-8")).get("format")
            == release.PART_FORMAT
        )
    except (OSError, ValueError, AttributeError):
        return False


def _named_parts(signed: dict | None) -> set[str]:
    if signed is None:
        return set()
    return {signed["full"]["path"], *(d.get("path", "") for d in signed["deltas"])} - {""}


def _prune(out: Path, keep: set[str]) -> list[str]:
    """Remove the part folders (and dead builds) this code wrote that are not in `keep`."""
    removed = []
    for folder in sorted(out.iterdir()):
        name = folder.name
        building = name.startswith(".") and ".building-" in name
        if building:
            pid = name.rpartition("-")[2]
            if not pid.isdigit() or store._alive(int(pid)) or not _is_own_part(folder):
                continue
        elif not name.startswith(("full-", "delta-")) or name in keep or not _is_own_part(folder):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(name)
    return removed


# --- reading the index ----------------------------------------------------------------------------------------


CHUNK_SELECT = (
    "SELECT c.row, c.chunk_id, c.boe_id, c.article_id, c.wording, c.part, c.text, l.title, a.path, a.heading, "
    "a.text FROM src.chunks c LEFT JOIN src.articles a ON a.boe_id = c.boe_id AND a.article_id = c.article_id "
    "AND a.wording = c.wording LEFT JOIN src.laws l ON l.boe_id = c.boe_id"
)


def _columns(connection: sqlite3.Connection, table: str, schema: str = "src") -> list[str]:
    return [r[1] for r in connection.execute(f"PRAGMA {schema}.table_info({table})")]


# --- writing a part -------------------------------------------------------------------------------------------


def _write_catalogue(
    index: Path, folder: Path, boe_ids: list[str] | None, removed: list[str], progress: Progress | None
) -> tuple[int, list[str]]:
    """Write the catalogue part (`folder/catalogue.sqlite` or changes: the caller names and compresses it) and
    the vectors files of the laws `boe_ids` (None: all) into `folder`; (rows shipped, laws shipped)."""
    manifest = store.read_manifest(index)
    layout = store.layout_of(manifest)
    part_db = folder / ".part.sqlite"
    connection = sqlite3.connect(part_db, isolation_level=None, uri=True)
    reader = store.connect(index / store.DATABASE)
    try:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("ATTACH DATABASE ? AS src", (f"{(index / store.DATABASE).resolve().as_uri()}?mode=ro",))
        connection.executescript(release.PART_SCHEMA)
        connection.execute("BEGIN")
        connection.execute("CREATE TABLE main.laws AS SELECT * FROM src.laws WHERE 0")
        article_columns = [c for c in _columns(connection, "articles") if c != "id"]
        connection.execute(
            f"CREATE TABLE main.articles AS SELECT {', '.join(article_columns)} FROM src.articles WHERE 0"
        )
        connection.execute("CREATE TEMP TABLE wanted (boe_id TEXT PRIMARY KEY)")
        if boe_ids is None:
            connection.execute("INSERT INTO wanted SELECT boe_id FROM src.laws")
        else:
            connection.executemany("INSERT OR IGNORE INTO wanted SELECT boe_id FROM src.laws WHERE boe_id = ?",
                                   [(b,) for b in boe_ids])  # fmt: skip
        connection.executemany("INSERT OR IGNORE INTO main.removed VALUES (?)", [(b,) for b in removed])
        connection.execute("INSERT INTO main.laws SELECT * FROM src.laws WHERE boe_id IN temp.wanted ORDER BY boe_id")
        connection.execute(
            f"INSERT INTO main.articles SELECT {', '.join(article_columns)} FROM src.articles "
            "WHERE boe_id IN temp.wanted ORDER BY boe_id, position"
        )
        shipped = [r[0] for r in connection.execute("SELECT boe_id FROM main.laws ORDER BY boe_id")]
        total = connection.execute("SELECT COUNT(*) FROM src.chunks WHERE boe_id IN temp.wanted").fetchone()[0]
        rows = _write_chunks(connection, index, manifest, layout, folder, total, progress)
        connection.executemany("INSERT INTO main.digests VALUES (?, ?)", _digests(reader, shipped))
        connection.execute("COMMIT")
        connection.execute("DETACH DATABASE src")
        connection.execute("VACUUM")  # rows in page order: the gzip'd part 7 % smaller on the sample
    finally:
        connection.close()
        reader.close()
    return rows, shipped


def _digests(reader: sqlite3.Connection, boe_ids: list[str]) -> list[tuple[str, str]]:
    """Each law's digest: as its commit recorded it, computed where the index has none (committed before
    digests existed). A follower recomputes them from the rows it rebuilds."""
    present = {r[0] for r in reader.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    recorded = dict(reader.execute("SELECT boe_id, sha256 FROM digests").fetchall()) if "digests" in present else {}
    return [(b, recorded.get(b) or store.law_digest(reader, b)) for b in boe_ids]


def _write_chunks(connection, index, manifest, layout, folder: Path, total: int, progress) -> int:
    """The chunks of the wanted laws in global row order: their recipes into the part, their vectors into
    vectors-NNN.f16.npy (PART_ROWS rows a file), BATCH rows at a time."""
    opened = [
        (p["base_row"], release_segment(index, p["name"], layout)) for p in manifest["segments"]
    ]  # fmt: skip
    names = release.vector_files(total)
    files = [
        np.lib.format.open_memmap(folder / name, mode="w+", dtype="<f2", shape=(rows, layout.full_dim))
        for name, rows in zip(names, _file_rows(total), strict=True)
    ]
    cursor = connection.execute(CHUNK_SELECT + " WHERE c.boe_id IN temp.wanted ORDER BY c.row")
    done = 0
    inserts = connection.cursor()
    while batch := cursor.fetchmany(BATCH):
        parts = []
        for i, (_, chunk_id, boe_id, article_id, wording, part, text, title, path, heading, body) in enumerate(batch):
            head, spans, literal = release.recipe(text, title, path, heading, body)
            parts.append((done + i, chunk_id, boe_id, article_id, wording, part, head, spans, literal))
        inserts.executemany("INSERT INTO main.chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", parts)
        vectors = store.gather(opened, np.array([r[0] for r in batch], dtype=np.int64))
        _put_rows(files, done, vectors)
        done += len(batch)
        if progress:
            progress("chunks", done, total)
    for array in files:
        array.flush()
    del files
    return done


def _file_rows(total: int) -> list[int]:
    return [min(release.PART_ROWS, total - start) for start in range(0, total, release.PART_ROWS)]


def _put_rows(files: list[np.ndarray], start: int, vectors: np.ndarray) -> None:
    """Write `vectors` at part rows start… across the PART_ROWS-row files."""
    row = start
    taken = 0
    while taken < len(vectors):
        number, local = divmod(row, release.PART_ROWS)
        count = min(len(vectors) - taken, release.PART_ROWS - local)
        files[number][local : local + count] = vectors[taken : taken + count].astype("<f2")
        row += count
        taken += count


def release_segment(index: Path, name: str, layout) -> store.segments.Segment:
    return store.segments.Segment(store.segments.segment_folder(index, name, index / store.DATABASE), layout)


def _write_part(out: Path, name: str, record: dict, fill: Callable[[Path], dict]) -> dict:
    """A part folder `out/name` written whole or not at all: `fill(folder)` writes its files (and returns what to
    add to its part.json); returns {relative path: {"bytes", "sha256"}} of its files."""
    building = out / f".{name}.building-{os.getpid()}"
    if building.exists():
        shutil.rmtree(building)
    if (out / name).exists():  # written by a publish killed before its manifest: named by no manifest
        if not _is_own_part(out / name):
            raise TargetError(f"{out / name}: not a release part legalsearch wrote; move it away and publish again")
        shutil.rmtree(out / name)
    building.mkdir(parents=True)
    (building / store.BUILDING_MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        extra = fill(building)
        (building / release.PART_MANIFEST).write_text(
            json.dumps({"format": release.PART_FORMAT, **record, **extra}, indent=1), encoding="utf-8"
        )
        files = {
            f"{name}/{p.relative_to(building).as_posix()}": {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(building.rglob("*"))
            if p.is_file() and p.name != store.BUILDING_MARKER
        }
        seal(building, store.BUILDING_MARKER)
        rename_into_place(building, out / name)
        return files
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)


def _fill(index: Path, boe_ids: list[str] | None, removed: list[str], database: str, progress) -> Callable:
    def fill(folder: Path) -> dict:
        rows, shipped = _write_catalogue(index, folder, boe_ids, removed, progress)
        if boe_ids is None:
            (folder / release.INDEX_MANIFEST).write_bytes((index / store.MANIFEST).read_bytes())
        release.gzip_file(folder / ".part.sqlite", folder / database)
        (folder / ".part.sqlite").unlink()
        return {"rows": rows, "laws": len(shipped)}

    return fill


# --- deciding what to publish ---------------------------------------------------------------------------------


def changed_laws(index: Path, since_commit: int) -> tuple[list[int], set[str], str | None]:
    """The commits after `since_commit`, and the laws they added, changed or removed; a reason a delta cannot say
    it (a whole-index rewrite among them, or a commit no longer in the log), else None."""
    connection = store.connect(index / store.DATABASE)
    try:
        if connection.execute("SELECT 1 FROM commits WHERE id = ?", (since_commit,)).fetchone() is None:
            return [], set(), f"commit {since_commit} of the previous publish is not in the index's log"
        rows = connection.execute(
            "SELECT id, kind, laws_added, laws_removed FROM commits WHERE id > ? ORDER BY id", (since_commit,)
        ).fetchall()
    finally:
        connection.close()
    laws: set[str] = set()
    for row in rows:
        if row["kind"] in ("build", "rewrite", "upgrade"):
            return [], set(), f"the index was rewritten ({row['kind']}, commit {row['id']})"
        laws |= set(json.loads(row["laws_added"])) | set(json.loads(row["laws_removed"]))
    return [r["id"] for r in rows], laws, None


def _chain_broken(previous: dict | None, signed: dict, manifest: dict) -> str | None:
    """Why no delta can lead from the previous release to this one (None: one can)."""
    if previous is None:
        return "the first publish into this folder"
    if previous["publisher"].get("index_created") != manifest["created"]:
        return "another index, or the index was rewritten, since the previous publish"
    if previous["fingerprint"] != signed["fingerprint"]:
        return "the model changed"
    for key in ("dims", "faiss", "chunking", "lexical"):
        if previous["index"].get(key) != signed["index"].get(key):
            return f"the index's {key} changed"
    return None


def _full_due(previous: dict, force: bool) -> str | None:
    """Why a full release is written beside the delta (None: the delta alone)."""
    if force:
        return "asked (--full)"
    since = sum(1 for d in previous["deltas"] if d["to"] > previous["full"]["sequence"])
    if since + 1 >= MAX_CHAIN:
        return f"{MAX_CHAIN} deltas since the last full release"
    return None


# --- the manifest -------------------------------------------------------------------------------------------


def fingerprint(model: dict, max_tokens: int) -> dict:
    """What identifies the vectors: the model's id, revision, pooling, normalisation, tokens, dims and the
    runtime/precision they were made with."""
    from .embedding import recorded_runtime

    backend, precision = recorded_runtime(model)
    pooling, normalize = _model_head(model)
    return {
        "id": model["id"], "revision": model.get("revision"), "dim": model["dim"], "max_tokens": max_tokens,
        "max_seq_length": model.get("max_seq_length"), "pooling": pooling, "normalize": normalize,
        "runtime": f"{backend} {precision}", "backend": backend, "precision": precision,
        "variant": model.get("variant"),
    }  # fmt: skip


def _model_head(model: dict) -> tuple[str | None, bool | None]:
    """The pooling mode and whether vectors are normalised, read from the model's sentence-transformers files
    (a local folder, or the Hugging Face cache); (None, None) when they cannot be found here."""
    folder = Path(model["id"])
    read = None
    if folder.is_dir():
        read = lambda name: (folder / name).read_text(encoding="utf-8")  # noqa: E731
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            def read(name: str) -> str:
                found = try_to_load_from_cache(model["id"], name, revision=model.get("revision"))
                if not isinstance(found, str):
                    raise OSError(name)
                return Path(found).read_text(encoding="utf-8")
        except ImportError:
            return None, None
    try:
        modules = json.loads(read("modules.json"))
        normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
        pooling_module = next(m for m in modules if str(m.get("type", "")).endswith("Pooling"))
        config = json.loads(read(f"{pooling_module['path']}/config.json"))
    except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError):
        return None, None
    if isinstance(config.get("pooling_mode"), str):  # sentence-transformers 5: {"pooling_mode": "cls"}
        return config["pooling_mode"], normalize
    modes = [k.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
             for k, v in config.items() if k.startswith("pooling_mode_") and v is True]  # fmt: skip
    return ("+".join(modes) or None), normalize


def watermark(index: Path) -> dict:
    """How far the publisher's BOE sync had got: its last complete run, last full listing, the last diario day
    read, and the newest `fecha_actualizacion` among the laws held."""
    mark = {"last_sync": None, "last_full_listing": None, "diario_until": None, "newest_update": None}
    connection = store.connect(index / store.DATABASE)
    try:
        mark["newest_update"] = connection.execute("SELECT MAX(fecha_actualizacion) FROM laws").fetchone()[0]
        for row in connection.execute("SELECT at, report FROM syncs ORDER BY id"):
            try:
                run = json.loads(row["report"])
            except ValueError:
                continue
            if not isinstance(run, dict):
                continue
            if run.get("diario_until"):
                mark["diario_until"] = str(run["diario_until"])
            if run.get("dry_run") or run.get("listing_error") or run.get("stopped"):
                continue
            mark["last_sync"] = run.get("started") or row["at"]
            if run.get("listing") == "full":
                mark["last_full_listing"] = mark["last_sync"]
    finally:
        connection.close()
    return mark


def probes(index: Path, manifest: dict, count: int = release.PROBES) -> list[dict]:
    """`count` chunks spread over the index, with their vectors as stored (float16, full dim, base64)."""
    connection = store.connect(index / store.DATABASE)
    try:
        total = connection.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        picked = []
        for k in range(min(count, total)):
            offset = (2 * k + 1) * total // (2 * min(count, total))
            picked.append(connection.execute(
                "SELECT row, chunk_id, text FROM chunks ORDER BY row LIMIT 1 OFFSET ?", (offset,)
            ).fetchone())  # fmt: skip
    finally:
        connection.close()
    if not picked:
        return []
    vectors = store.row_vectors(index, manifest, [r["row"] for r in picked])
    return [
        {"chunk_id": r["chunk_id"], "text": r["text"], "vector": release.encode_vector(v)}
        for r, v in zip(picked, vectors, strict=True)
    ]


def _signed(index: Path, manifest: dict, series: str, sequence: int, expires_days: float) -> dict:
    """The manifest's fields that describe the index now (the parts are added by the caller)."""
    static = json.loads((index / store.MANIFEST).read_text(encoding="utf-8"))
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return {
        "format": release.FORMAT,
        "format_version": release.FORMAT_VERSION,
        "series": series,
        "sequence": sequence,
        "created": release.utc(now),
        "expires": release.utc(now + datetime.timedelta(days=expires_days)),
        "legalsearch_version": __version__,
        "fingerprint": fingerprint(manifest["model"], manifest["chunking"]["max_tokens"]),
        "index": static,
        "defaults": manifest.get("defaults", {}),
        "counts": manifest["counts"],
        "watermark": watermark(index),
        "publisher": {"commit": manifest["commit"], "index_created": manifest["created"]},
        "probes": probes(index, manifest),
    }


# --- publishing -----------------------------------------------------------------------------------------------


def publish(
    index: Path,
    out: Path,
    key: Path,
    expires_days: float = EXPIRES_DAYS,
    full: bool = False,
    progress: Progress | None = None,
) -> PublishReport:
    """Publish the index at `index` into the release folder `out`, signed with the Ed25519 private key file
    `key`: a full release or a delta (see the module's docstring), then the signed manifest by rename, then
    the parts no manifest names any more are removed."""
    started = time.perf_counter()
    index, out = store.real_path(index), Path(os.path.abspath(Path(out).expanduser()))
    private_key = release.load_private_key(key)
    if expires_days <= 0:
        raise release.ReleaseError(f"--expires-days {expires_days}: give a positive number of days")
    store.read_manifest(index)  # an index, readable, of this format: one line otherwise
    if out == index or index in out.parents or out in index.parents:
        raise TargetError(f"{out}: the release folder must be outside the index {index} (and not hold it)")
    previous = check_out(out)
    with store.WriterLock(out), store.WriterLock(index), storage_errors(out, lambda: _needed(index)):
        out.mkdir(parents=True, exist_ok=True)
        _prune(out, _named_parts(previous))  # dead builds, parts of publishes killed before their manifest
        return _publish(index, out, private_key, previous, expires_days, full, progress, started)


def _needed(index: Path) -> int:
    try:
        return sum(p.stat().st_size for p in index.rglob("*") if p.is_file())
    except OSError:
        return 1 << 30


def _publish(index, out, private_key, previous, expires_days, force_full, progress, started) -> PublishReport:
    manifest = store.read_manifest(index)
    sequence = previous["sequence"] + 1 if previous else 1
    series = previous["series"] if previous else uuid.uuid4().hex
    signed = _signed(index, manifest, series, sequence, expires_days)
    commits, laws, broken = [], set(), "the first publish into this folder"
    if previous is not None:
        commits, laws, broken = changed_laws(index, previous["publisher"]["commit"])
    broken = broken or _chain_broken(previous, signed, manifest)
    changed = _chunks_of(index, laws) if laws and not broken else 0
    if not broken and changed > FULL_SHARE * max(manifest["counts"]["chunks"], 1):
        broken = f"the change ({changed:,} chunks) is over {FULL_SHARE:.0%} of the index"
    delta, part = None, None
    if broken is None:  # the delta, kept even when a full release is written too: followers keep following
        part = _publish_delta(index, out, sequence, sorted(laws), progress) if laws else None
        delta = _delta_record(sequence, commits, laws, part)
        signed["deltas"] = [*previous["deltas"], delta][-MAX_DELTAS:]
        signed["full"] = previous["full"]
    reason = broken or _full_due(previous, force_full)
    full = None
    if reason is not None:
        full = _publish_full(index, out, sequence, progress)
        signed["full"] = {"sequence": sequence, "path": full.path, "rows": full.rows, "bytes": full.bytes,
                          "commit": manifest["commit"], "files": full.files}  # fmt: skip
        if broken:
            signed["deltas"] = []
    release.parse(signed)
    write_atomic(out / release.MANIFEST, release.sign(signed, private_key))
    fsync_dir(out)
    removed = _prune(out, _named_parts(signed) | _named_parts(previous))
    kind = "full" if full else ("delta" if part else "empty")
    shipped = full or part
    return PublishReport(
        out=out, sequence=sequence, kind=kind, reason=reason or "", path=shipped.path if shipped else "",
        bytes=shipped.bytes if shipped else 0, rows=shipped.rows if shipped else 0,
        laws_changed=delta["laws_changed"] if delta else 0, laws_removed=delta["laws_removed"] if delta else 0,
        delta_bytes=delta["bytes"] if delta else 0, full_bytes=signed["full"]["bytes"],
        index_bytes=_index_bytes(index, manifest), chunks=manifest["counts"]["chunks"], removed_parts=removed,
        seconds=round(time.perf_counter() - started, 3),
    )  # fmt: skip


def _delta_record(sequence: int, commits: list[int], laws: set[str], part: _Part | None) -> dict:
    delta = {"from": sequence - 1, "to": sequence, "path": "", "commits": commits, "laws_changed": 0,
             "laws_removed": len(laws), "rows": 0, "bytes": 0, "files": {}}  # fmt: skip
    if part is not None:
        delta.update(path=part.path, laws_changed=part.laws, laws_removed=len(laws) - part.laws, rows=part.rows,
                     bytes=part.bytes, files=part.files)  # fmt: skip
    return delta


@dataclass
class _Part:
    path: str
    files: dict
    rows: int
    laws: int

    @property
    def bytes(self) -> int:
        return sum(meta["bytes"] for meta in self.files.values())


def _publish_full(index: Path, out: Path, sequence: int, progress) -> _Part:
    name = f"full-{sequence:06d}"
    files = _write_part(out, name, {"kind": "full", "sequence": sequence},
                        _fill(index, None, [], release.CATALOGUE, progress))  # fmt: skip
    record = json.loads((out / name / release.PART_MANIFEST).read_text(encoding="utf-8"))
    return _Part(name, files, record["rows"], record["laws"])


def _publish_delta(index: Path, out: Path, sequence: int, laws: list[str], progress) -> _Part:
    name = f"delta-{sequence:06d}"
    files = _write_part(out, name, {"kind": "delta", "from": sequence - 1, "to": sequence},
                        _fill(index, laws, laws, release.CHANGES, progress))  # fmt: skip
    record = json.loads((out / name / release.PART_MANIFEST).read_text(encoding="utf-8"))
    return _Part(name, files, record["rows"], record["laws"])


def _chunks_of(index: Path, laws: set[str]) -> int:
    connection = store.connect(index / store.DATABASE)
    try:
        return sum(connection.execute("SELECT COUNT(*) FROM chunks WHERE boe_id = ?", (b,)).fetchone()[0] for b in laws)
    finally:
        connection.close()


def _index_bytes(index: Path, manifest: dict) -> int:
    from .indexing import stored_bytes

    return stored_bytes(index, manifest)
