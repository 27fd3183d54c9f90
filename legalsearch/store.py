"""The index folder: plain files, readable without the code that wrote it, never pickled.

    <index>/manifest.json        format and tool version, model id/revision/dim, dims, FAISS factory per dim,
                                 chunking, defaults, counts, corpus fingerprint, sources, checksums
    <index>/legalsearch.sqlite   laws, articles, chunks (content hashes): metadata and filters; an article's
                                 `wording` is '' for the text in force, else the date an earlier wording came
                                 into force (indexed with `--history`), and chunks carry the same key
    <index>/vectors.f16.npy      full-dim unit vectors, one row per chunk (row = chunks.row)
    <index>/faiss/dim-<d>.faiss  per Matryoshka dim: first d components re-normalised, inner product

An index is written into a temporary sibling folder and renamed into place, so a crash or Ctrl-C never leaves
a broken index and never touches the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from . import __version__, lexical
from .documents import Article, Chunk, Law
from .embedding import matryoshka
from .errors import IndexFormatError, TargetError
from .sources.structure import is_repealed

FORMAT_VERSION = 3
UPGRADABLE_FORMATS = (1, 2)  # read by `legalsearch index` to rewrite them in this format, vectors kept
MANIFEST = "manifest.json"
MARKER = "legalsearch-index"  # the manifest's "format": what makes a folder recognisably a legalsearch index
BUILDING_MARKER = ".legalsearch-building"  # written first into every temporary build folder
DATABASE = "legalsearch.sqlite"
VECTORS = "vectors.f16.npy"
FAISS_KINDS = ("flat", "hnsw")
QUANTIZATIONS = ("none", "int8", "binary")
# FAISS factory per (kind, quantization); binary codes are the signs of the re-normalised prefix (Hamming)
FAISS_FACTORIES = {
    ("flat", "none"): "Flat", ("hnsw", "none"): "HNSW32,Flat",
    ("flat", "int8"): "SQ8", ("hnsw", "int8"): "HNSW32,SQ8",
    ("flat", "binary"): "BFlat", ("hnsw", "binary"): "BHNSW32",
}  # fmt: skip

SCHEMA = """
CREATE TABLE laws (
    boe_id TEXT PRIMARY KEY, title TEXT NOT NULL, rango TEXT, departamento TEXT, fecha_disposicion TEXT,
    fecha_publicacion TEXT, fecha_vigencia TEXT, fecha_actualizacion TEXT, eli_url TEXT, status TEXT,
    source_format TEXT, origin TEXT, source_sha256 TEXT
);
CREATE TABLE articles (
    id INTEGER PRIMARY KEY, boe_id TEXT NOT NULL REFERENCES laws(boe_id), article_id TEXT NOT NULL,
    position INTEGER NOT NULL, kind TEXT NOT NULL, number TEXT, heading TEXT NOT NULL, path TEXT NOT NULL,
    text TEXT NOT NULL, url TEXT NOT NULL, anchor TEXT NOT NULL, notes TEXT NOT NULL, version_date TEXT,
    version_published TEXT, version_norma TEXT, version_until TEXT, status TEXT NOT NULL DEFAULT 'vigente',
    wording TEXT NOT NULL, content_hash TEXT NOT NULL, UNIQUE (boe_id, article_id, wording)
);
CREATE TABLE chunks (
    row INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, boe_id TEXT NOT NULL, article_id TEXT NOT NULL,
    wording TEXT NOT NULL, part INTEGER NOT NULL, text TEXT NOT NULL, content_hash TEXT NOT NULL
);
CREATE INDEX chunks_article ON chunks (boe_id, article_id, wording);
"""
LAW_COLUMNS = [f.name for f in fields(Law) if f.name not in ("articles", "history")]
ARTICLE_COLUMNS = [f.name for f in fields(Article)]


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all: into a temporary sibling, flushed, then renamed over it."""
    partial = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        with open(partial, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def corpus_fingerprint(chunks: list[Chunk]) -> str:
    digest = hashlib.sha256()
    for chunk in sorted(chunks, key=lambda c: c.chunk_id):
        digest.update(f"{chunk.chunk_id}\x1f{chunk.content_hash}\n".encode())
    return digest.hexdigest()


@dataclass
class StoredLaw:
    """A law as the index holds it: its metadata, units, chunks and their vectors (full dim)."""

    law: Law
    chunks: list[Chunk]
    vectors: np.ndarray  # (len(chunks), full_dim) float32
    source_sha256: str | None = None


@dataclass
class IndexContents:
    model: dict
    dims: list[int]
    faiss_kind: str
    max_tokens: int
    quantize: str = "none"
    has_lexical: bool = True
    laws: list[StoredLaw] = field(default_factory=list)
    sources: dict[str, dict] = field(default_factory=dict)  # source label → {"sha256", "laws": [boe_id …]}
    defaults: dict = field(default_factory=dict)
    build: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION  # of the folder it was read from


def _law_from_rows(law_row: sqlite3.Row, article_rows: list[sqlite3.Row]) -> Law:
    law = Law(**{c: law_row[c] for c in LAW_COLUMNS})
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


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    return connection


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


def _manifest_problem(manifest: object) -> str | None:
    """What is wrong with the shape of a manifest (None: nothing)."""
    if not isinstance(manifest, dict):
        return f"holds {type(manifest).__name__}, not an object"
    expected = {
        "format_version": int, "legalsearch_version": str, "model": dict, "dims": list, "faiss": dict,
        "chunking": dict, "counts": dict, "files": dict,
    }  # fmt: skip
    for key, kind in expected.items():
        if not isinstance(manifest.get(key), kind):
            return f"{key!r} is missing or not {kind.__name__}"
    model, counts = manifest["model"], manifest["counts"]
    if not isinstance(model.get("id"), str) or not isinstance(model.get("dim"), int) or model["dim"] <= 0:
        return "'model' lacks its id or dim"
    dims = manifest["dims"]
    if not dims or not all(isinstance(d, int) and 0 < d <= model["dim"] for d in dims):
        return f"'dims' {dims!r} are not dims of a {model['dim']}-dim model"
    for key in ("laws", "articles", "chunks"):
        if not isinstance(counts.get(key), int) or counts[key] < 0:
            return f"'counts' lacks {key}"
    if (
        manifest["faiss"].get("kind") not in FAISS_KINDS
        or manifest["faiss"].get("quantize", "none") not in QUANTIZATIONS
    ):
        return "'faiss' names an unknown kind or quantization"
    if not isinstance(manifest["chunking"].get("max_tokens"), int):
        return "'chunking' lacks max_tokens"
    for name, meta in manifest["files"].items():
        if (
            not isinstance(meta, dict)
            or not isinstance(meta.get("bytes"), int)
            or not isinstance(meta.get("sha256"), str)
        ):
            return f"'files' entry {name!r} lacks bytes or sha256"
        if name.startswith(("/", "..")) or ".." in Path(name).parts:
            return f"'files' entry {name!r} points outside the index"
    return None


def read_manifest(index: Path, upgrade: bool = False) -> dict:
    """The manifest of an index folder, checked: exists, parses, has the shape this code reads, a format this
    code reads (or, with `upgrade`, one it can rewrite), files present at their recorded sizes."""
    path = index / MANIFEST
    if not index.exists():
        tidy(index)
    if not index.exists():
        raise IndexFormatError(f"{index}: no index here; build one with `legalsearch index SOURCE… --index {index}`")
    if not path.exists():
        raise IndexFormatError(f"{index}: not a legalsearch index (no {MANIFEST}); rebuild it with `legalsearch index`")
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
    if problem is None and version != FORMAT_VERSION and version not in UPGRADABLE_FORMATS:
        problem = f"unknown format_version {version!r}"
    if problem is not None:
        raise IndexFormatError(
            f"{path}: not a valid legalsearch manifest ({problem}); rebuild the index into a new --index"
        )
    for name, meta in manifest["files"].items():
        file = index / name
        if not file.is_file() or file.stat().st_size != meta["bytes"]:
            raise IndexFormatError(f"{file}: missing or not the size the manifest records; rebuild the index")
    return manifest


SQLITE_HEADER = b"SQLite format 3\x00"
FAISS_FOURCC = {b"IxFI", b"IHNf", b"IxSQ", b"IHNs"}
FAISS_BINARY_FOURCC = {b"IBxF", b"IBHf"}


def check_files(index: Path, manifest: dict) -> None:
    """The cheap checks every open runs: each file's header, shape and row count against the manifest (the
    database's tables, the vectors' shape, each FAISS file's `d` and `ntotal`, the BM25 arrays). Full checksums
    are `verify_checksums` (`info --verify`): they read every byte."""
    chunks, full_dim = manifest["counts"]["chunks"], manifest["model"]["dim"]
    _check_database(index / DATABASE, manifest)
    _check_npy(index / VECTORS, (chunks, full_dim), np.float16)
    binary = manifest["faiss"].get("quantize") == "binary"
    for dim in manifest["dims"]:
        _check_faiss(index / "faiss" / f"dim-{dim}.faiss", dim, chunks, binary)
    if "lexical" in manifest:
        _check_bm25(index / manifest["lexical"].get("folder", lexical.FOLDER), chunks)


def _damaged(path: Path, what: str) -> IndexFormatError:
    return IndexFormatError(f"{path}: {what}; the index is damaged: rebuild it into a new --index")


def _check_database(path: Path, manifest: dict) -> None:
    try:
        with open(path, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise _damaged(path, f"unreadable ({exc.strerror})") from None
    if header != SQLITE_HEADER:
        raise _damaged(path, "not an SQLite database")
    connection = connect(path)
    try:
        laws = connection.execute("SELECT COUNT(*) FROM laws").fetchone()[0]
        chunks = connection.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        last = connection.execute("SELECT MAX(row) FROM chunks").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, f"unreadable database ({exc})") from None
    finally:
        connection.close()
    counts = manifest["counts"]
    if laws != counts["laws"] or chunks != counts["chunks"] or (chunks and last != chunks - 1):
        raise _damaged(
            path, f"holds {laws} laws and {chunks} chunks, the manifest {counts['laws']} and {counts['chunks']}"
        )


def _check_npy(path: Path, shape: tuple, dtype) -> np.ndarray | None:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise _damaged(path, f"not a readable .npy array ({exc})") from None
    if shape is not None and (array.shape != shape or array.dtype != dtype):
        raise _damaged(path, f"holds {array.dtype} {array.shape}, expected {np.dtype(dtype)} {shape}")
    return array


def _check_faiss(path: Path, dim: int, chunks: int, binary: bool) -> None:
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise _damaged(path, f"unreadable ({exc.strerror})") from None
    fourcc = head[:4]
    if binary and fourcc in FAISS_BINARY_FOURCC and len(head) >= 20:
        d, _, ntotal = struct.unpack("<iiq", head[4:20])
    elif not binary and fourcc in FAISS_FOURCC and len(head) >= 16:
        d, ntotal = struct.unpack("<iq", head[4:16])
    else:
        raise _damaged(path, "not a FAISS index of the kind the manifest records")
    if d != dim or ntotal != chunks:
        raise _damaged(path, f"a FAISS index of {ntotal} vectors at dim {d}, the manifest says {chunks} at dim {dim}")


def _check_bm25(folder: Path, chunks: int) -> None:
    params_file = folder / "params.index.json"
    try:
        params = json.loads(params_file.read_text(encoding="utf-8"))
        vocab = json.loads((folder / "vocab.index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _damaged(folder, f"unreadable BM25 index ({exc})") from None
    if not isinstance(params, dict) or not isinstance(vocab, dict):
        raise _damaged(folder, "BM25 parameters or vocabulary of the wrong shape")
    if params.get("num_docs") != max(chunks, 1):  # an empty index holds one empty document
        raise _damaged(params_file, f"BM25 over {params.get('num_docs')} chunks, the manifest says {chunks}")
    indptr = _check_npy(folder / "indptr.csc.index.npy", None, None)
    data = _check_npy(folder / "data.csc.index.npy", None, None)
    indices = _check_npy(folder / "indices.csc.index.npy", None, None)
    if indptr.ndim != 1 or not 0 < len(indptr) <= len(vocab) + 1 or data.shape != indices.shape:
        raise _damaged(folder, "BM25 arrays that do not match its vocabulary")
    if len(indptr) and int(indptr[-1]) != len(data):
        raise _damaged(folder, "BM25 arrays that do not match each other")


def update_defaults(index: Path, changes: dict) -> dict:
    """Merge `changes` into an index's search defaults, rewriting its manifest atomically; the new manifest."""
    manifest = read_manifest(index)
    manifest.setdefault("defaults", {}).update(changes)
    write_atomic(index / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
    return manifest


def verify_checksums(index: Path, manifest: dict) -> list[str]:
    """Names of the index files whose sha256 differs from the manifest's."""
    return [name for name, meta in manifest["files"].items() if sha256_file(index / name) != meta["sha256"]]


def load_contents(index: Path) -> IndexContents:
    """Everything an index holds, to build the next version of it from."""
    manifest = read_manifest(index, upgrade=True)
    check_files(index, manifest)
    vectors = np.load(index / VECTORS, mmap_mode="r", allow_pickle=False)
    contents = IndexContents(
        format_version=manifest["format_version"],
        model=manifest["model"],
        dims=manifest["dims"],
        faiss_kind=manifest["faiss"]["kind"],
        max_tokens=manifest["chunking"]["max_tokens"],
        quantize=manifest["faiss"].get("quantize", "none"),
        has_lexical="lexical" in manifest,
        sources=manifest.get("sources", {}),
        defaults=manifest.get("defaults", {}),
    )
    connection = connect(index / DATABASE)
    try:
        for law_row in connection.execute("SELECT * FROM laws ORDER BY rowid"):
            boe_id = law_row["boe_id"]
            articles = connection.execute("SELECT * FROM articles WHERE boe_id = ? ORDER BY position", (boe_id,))
            law = _law_from_rows(law_row, articles.fetchall())
            chunk_rows = connection.execute("SELECT * FROM chunks WHERE boe_id = ? ORDER BY row", (boe_id,)).fetchall()
            worded = bool(chunk_rows) and "wording" in set(chunk_rows[0].keys())
            chunks = [
                Chunk(
                    r["chunk_id"], r["boe_id"], r["article_id"], r["part"], r["text"],
                    (r["wording"] or None) if worded else None,
                )
                for r in chunk_rows
            ]  # fmt: skip
            rows = [r["row"] for r in chunk_rows]
            contents.laws.append(
                StoredLaw(law, chunks, np.asarray(vectors[rows], dtype=np.float32), law_row["source_sha256"])
            )
    except sqlite3.DatabaseError as exc:
        raise _damaged(index / DATABASE, f"unreadable database ({exc})") from None
    finally:
        connection.close()
    return contents


def _write_database(path: Path, laws: list[StoredLaw]) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.executescript(SCHEMA)
        row = 0
        for stored in laws:
            law = stored.law
            connection.execute(
                f"INSERT INTO laws ({', '.join(LAW_COLUMNS)}, source_sha256) "
                f"VALUES ({', '.join('?' * (len(LAW_COLUMNS) + 1))})",
                [getattr(law, c) for c in LAW_COLUMNS] + [stored.source_sha256],
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
        connection.commit()
    finally:
        connection.close()


def build_faiss(vectors: np.ndarray, dim: int, kind: str, quantize: str = "none"):
    """The FAISS index of one dim: re-normalised prefixes, inner product (float, int8) or Hamming (binary)."""
    import faiss

    prefixes = matryoshka(vectors, dim)
    if quantize == "binary":
        index = faiss.IndexBinaryHNSW(dim, 32) if kind == "hnsw" else faiss.IndexBinaryFlat(dim)
        if len(prefixes):
            index.add(np.packbits(prefixes > 0, axis=1))
        return index
    index = faiss.index_factory(dim, FAISS_FACTORIES[(kind, quantize)], faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        index.hnsw.efConstruction = 200
    if len(prefixes):
        if not index.is_trained:
            index.train(prefixes)
        index.add(prefixes)
    return index


def write_index(index: Path, contents: IndexContents, on_step=None) -> dict:
    """Write `contents` as the index at `index`, atomically: into a temporary sibling, then renamed over the old
    one. Returns the manifest written. `on_step(name)` is called as each file is done."""
    import faiss

    index = Path(index)
    check_target(index)
    index.parent.mkdir(parents=True, exist_ok=True)
    tidy(index)
    building = index.parent / f".{index.name}.building-{os.getpid()}"
    _remove_own(building)
    building.mkdir()
    (building / BUILDING_MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
    (building / "faiss").mkdir()
    try:
        full_dim = contents.model["dim"]
        vectors = (
            np.concatenate([s.vectors for s in contents.laws])
            if contents.laws
            else np.zeros((0, full_dim), dtype=np.float32)
        )
        chunks = [c for s in contents.laws for c in s.chunks]
        _write_database(building / DATABASE, contents.laws)
        _step(on_step, DATABASE)
        # the float16 file is the source of every dim: FAISS gets exactly what a later rebuild would read back
        vectors = vectors.astype(np.float16)
        np.save(building / VECTORS, vectors, allow_pickle=False)
        _step(on_step, VECTORS)
        factories = {}
        for dim in contents.dims:
            index_of_dim = build_faiss(vectors, dim, contents.faiss_kind, contents.quantize)
            target = str(building / "faiss" / f"dim-{dim}.faiss")
            if contents.quantize == "binary":
                faiss.write_index_binary(index_of_dim, target)
            else:
                faiss.write_index(index_of_dim, target)
            factories[str(dim)] = FAISS_FACTORIES[(contents.faiss_kind, contents.quantize)]
            _step(on_step, f"faiss/dim-{dim}.faiss")
        lexical.build([c.text for c in chunks], building / lexical.FOLDER)
        _step(on_step, lexical.FOLDER)
        files = {
            str(p.relative_to(building)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(building.rglob("*"))
            if p.is_file() and p.name != BUILDING_MARKER
        }
        previous = index / MANIFEST
        created = None
        if previous.exists():
            try:
                created = json.loads(previous.read_text(encoding="utf-8")).get("created")
            except (OSError, json.JSONDecodeError):
                created = None
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest = {
            "format": MARKER,
            "format_version": FORMAT_VERSION,
            "legalsearch_version": __version__,
            "model": contents.model,
            "dims": contents.dims,
            "faiss": {
                "kind": contents.faiss_kind,
                "quantize": contents.quantize,
                "factory": factories,
                "metric": "hamming, rescored by inner product" if contents.quantize == "binary" else "inner_product",
            },
            "lexical": {
                "kind": "bm25",
                "library": "bm25s",
                "method": "lucene",
                "k1": 1.5,
                "b": 0.75,
                "analysis": "lower case, accents folded, Spanish stopwords, Snowball Spanish stemmer (PyStemmer)",
                "folder": lexical.FOLDER,
            },
            "chunking": {"max_tokens": contents.max_tokens},
            "defaults": contents.defaults,
            "counts": {
                "laws": len(contents.laws),
                "articles": sum(len(s.law.articles) for s in contents.laws),
                "earlier_wordings": sum(len(s.law.history) for s in contents.laws),
                "chunks": len(chunks),
            },
            "corpus_fingerprint": corpus_fingerprint(chunks),
            "sources": contents.sources,
            "created": created or now,
            "updated": now,
            "build": contents.build,
            "files": files,
        }
        (building / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        _fsync_tree(building)
        (building / BUILDING_MARKER).unlink()
        _swap_into_place(building, index)
        return manifest
    finally:
        _remove_own(building)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _made_by_us(folder: Path) -> bool:
    """Whether a leftover folder beside an index is recognisably legalsearch's: a build in progress carries
    `BUILDING_MARKER`; a retired previous index is an index."""
    return folder.is_dir() and not folder.is_symlink() and ((folder / BUILDING_MARKER).is_file() or is_index(folder))


def _remove_own(folder: Path) -> None:
    """Remove `folder` if legalsearch made it; anything else there is left as it is."""
    if folder.exists() and _made_by_us(folder):
        shutil.rmtree(folder, ignore_errors=True)


def tidy(index: Path) -> None:
    """Remove what killed builds left beside `index` (only folders legalsearch recognisably made, of processes
    no longer alive); if one died between its two renames, put the previous index back."""
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


def _step(on_step, name: str) -> None:
    if on_step is not None:
        on_step(name)


def _fsync_tree(folder: Path) -> None:
    """Flush every file of a finished build to disk before it is renamed into place (a power cut must not leave
    a renamed index with empty files)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


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
