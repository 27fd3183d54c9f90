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
from .errors import IndexFormatError

FORMAT_VERSION = 2
UPGRADABLE_FORMATS = (1,)  # read by `legalsearch index` to rewrite them in this format, vectors kept
MANIFEST = "manifest.json"
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
    version_published TEXT, version_norma TEXT, version_until TEXT, wording TEXT NOT NULL,
    content_hash TEXT NOT NULL, UNIQUE (boe_id, article_id, wording)
);
CREATE TABLE chunks (
    row INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, boe_id TEXT NOT NULL, article_id TEXT NOT NULL,
    wording TEXT NOT NULL, part INTEGER NOT NULL, text TEXT NOT NULL, content_hash TEXT NOT NULL
);
CREATE INDEX chunks_article ON chunks (boe_id, article_id, wording);
"""
LAW_COLUMNS = [f.name for f in fields(Law) if f.name not in ("articles", "history")]
ARTICLE_COLUMNS = [f.name for f in fields(Article)]


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
        (law.history if earlier else law.articles).append(Article(**values))
    return law


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    return connection


def read_manifest(index: Path, upgrade: bool = False) -> dict:
    """The manifest of an index folder, checked: exists, parses, format this code reads (or, with `upgrade`,
    one it can rewrite), files present."""
    path = index / MANIFEST
    if not index.exists():
        tidy(index)
    if not index.exists():
        raise IndexFormatError(f"{index}: no index here; build one with `legalsearch index SOURCE… --index {index}`")
    if not path.exists():
        raise IndexFormatError(f"{index}: not a legalsearch index (no {MANIFEST}); rebuild it with `legalsearch index`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"{index}: unreadable {MANIFEST} ({exc}); rebuild the index") from None
    version = manifest.get("format_version")
    if upgrade and version in UPGRADABLE_FORMATS:
        pass
    elif version in UPGRADABLE_FORMATS:
        raise IndexFormatError(
            f"{index}: index format {version}; upgrade it to format {FORMAT_VERSION} by running `legalsearch index` "
            f"on it again with its sources (nothing is embedded again)"
        )
    elif version != FORMAT_VERSION:
        raise IndexFormatError(
            f"{index}: index format {version} but this legalsearch ({__version__}) reads format {FORMAT_VERSION}; "
            "rebuild it with `legalsearch index`"
        )
    for name, meta in manifest.get("files", {}).items():
        file = index / name
        if not file.exists() or file.stat().st_size != meta["bytes"]:
            raise IndexFormatError(f"{index}: {name} is missing or truncated; rebuild the index")
    return manifest


def verify_checksums(index: Path, manifest: dict) -> list[str]:
    """Names of the index files whose sha256 differs from the manifest's."""
    return [name for name, meta in manifest["files"].items() if sha256_file(index / name) != meta["sha256"]]


def load_contents(index: Path) -> IndexContents:
    """Everything an index holds, to build the next version of it from."""
    manifest = read_manifest(index, upgrade=True)
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
    index.parent.mkdir(parents=True, exist_ok=True)
    tidy(index)
    building = index.parent / f".{index.name}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    (building / "faiss").mkdir(parents=True)
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
            if p.is_file()
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
        _swap_into_place(building, index)
        return manifest
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tidy(index: Path) -> None:
    """Remove what killed builds left beside `index`; if one died between its two renames, put the previous
    index back."""
    for leftover in index.parent.glob(f".{index.name}.*-*"):
        kind, _, pid = leftover.name.rpartition("-")
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if kind.endswith(".old") and not index.exists():
            leftover.rename(index)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _step(on_step, name: str) -> None:
    if on_step is not None:
        on_step(name)


def _swap_into_place(building: Path, index: Path) -> None:
    if not index.exists():
        building.rename(index)
        return
    retired = index.parent / f".{index.name}.old-{os.getpid()}"
    shutil.rmtree(retired, ignore_errors=True)
    index.rename(retired)
    try:
        building.rename(index)
    except OSError:
        retired.rename(index)  # put the previous index back
        raise
    shutil.rmtree(retired, ignore_errors=True)
