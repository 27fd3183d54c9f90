"""Segments: the immutable parts of an index that hold its chunks' vectors, FAISS files and BM25 postings.

    segments/<name>/segment.json        marker, row count, dims, the checksum of every file
    segments/<name>/vectors.f16.npy     full-dim unit vectors, one row per chunk of the segment
    segments/<name>/faiss/dim-<d>.faiss per built Matryoshka dim: re-normalised prefixes, inner product
    segments/<name>/bm25/               term postings (lexical.write_postings)

A segment is written under a hidden building name, flushed to disk and renamed into place; it is never
changed after that. Which segments an index is made of, and which of their rows are deleted, is the catalogue's
business (`catalogue.py`): a segment no catalogue names is a leftover of a killed run, and `tidy` removes it.
Global chunk row = the segment's `base_row` (in the catalogue) + its local row.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import lexical
from .errors import IndexFormatError
from .files import fsync_dir, fsync_tree, sha256_file
from .matryoshka import matryoshka

FOLDER = "segments"
SEGMENT_MANIFEST = "segment.json"
SEGMENT_MARKER = "legalsearch-segment"
BUILDING_MARKER = ".legalsearch-building"
VECTORS = "vectors.f16.npy"
FAISS_KINDS = ("flat", "hnsw")
QUANTIZATIONS = ("none", "int8", "binary")
# Float FAISS files above this dim store float16 codes (SQfp16): the same float16 values the vector file holds,
# half the bytes of float32. The small dims the funnel scans stay float32 (`Flat`), the fastest to scan.
HALF_ABOVE = 128
FAISS_FOURCC = {b"IxF2", b"IxFI", b"IxHf", b"IxHF", b"IHNf", b"IxSQ", b"IHNs", b"IxSq"}
FAISS_BINARY_FOURCC = {b"IBxF", b"IBHf", b"IBHF"}


def factory(kind: str, quantize: str, dim: int) -> str:
    """The FAISS factory string of one dim (binary: flat or HNSW over sign bits)."""
    if quantize == "binary":
        return "BHNSW32" if kind == "hnsw" else "BFlat"
    storage = "SQ8" if quantize == "int8" else ("SQfp16" if dim > HALF_ABOVE else "Flat")
    return f"HNSW32,{storage}" if kind == "hnsw" else storage


def build_faiss(vectors: np.ndarray, dim: int, kind: str, quantize: str = "none"):
    """The FAISS index of one dim: re-normalised prefixes, inner product (float, int8) or Hamming (binary)."""
    import faiss

    prefixes = matryoshka(vectors, dim)
    if quantize == "binary":
        index = faiss.IndexBinaryHNSW(dim, 32) if kind == "hnsw" else faiss.IndexBinaryFlat(dim)
        if len(prefixes):
            index.add(np.packbits(prefixes > 0, axis=1))
        return index
    index = faiss.index_factory(dim, factory(kind, quantize, dim), faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        index.hnsw.efConstruction = 200
    if len(prefixes):
        if not index.is_trained:
            index.train(prefixes)
        index.add(prefixes)
    return index


@dataclass(frozen=True)
class Layout:
    """What every segment of one index holds: the model's full dim, the dims with a FAISS file, their kind."""

    full_dim: int
    dims: tuple[int, ...]
    kind: str = "flat"
    quantize: str = "none"


def new_name() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def write(
    index: Path,
    vectors: np.ndarray,
    texts: Sequence[str],
    layout: Layout,
    name: str | None = None,
    on_step: Callable[[str], None] | None = None,
    postings: lexical.Postings | None = None,
) -> dict:
    """Write one segment into `index/segments/` from full-dim `vectors` and the chunks' `texts` (row i = chunk i),
    whole or not at all; its record (name, rows, files). `postings`, when given, are the texts' BM25 postings
    already built (a merge)."""

    name = name or new_name()
    parent = index / FOLDER
    parent.mkdir(parents=True, exist_ok=True)
    building = parent / f".{name}.building-{os.getpid()}"
    building.mkdir()
    (building / BUILDING_MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        halves = np.asarray(vectors, dtype=np.float16)
        np.save(building / VECTORS, halves, allow_pickle=False)
        _step(on_step, VECTORS)
        (building / "faiss").mkdir()
        for dim in layout.dims:
            built = build_faiss(halves, dim, layout.kind, layout.quantize)
            _write_faiss(built, building / "faiss" / f"dim-{dim}.faiss", layout.quantize == "binary")
            _step(on_step, f"faiss/dim-{dim}.faiss")
        (postings or lexical.Postings.build(texts)).save(building / lexical.FOLDER)
        _step(on_step, lexical.FOLDER)
        files = {
            str(p.relative_to(building)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(building.rglob("*"))
            if p.is_file() and p.name != BUILDING_MARKER
        }
        record = {"format": SEGMENT_MARKER, "name": name, "rows": len(halves), "dims": list(layout.dims),
                  "full_dim": layout.full_dim, "files": files}  # fmt: skip
        (building / SEGMENT_MANIFEST).write_text(json.dumps(record, indent=1), encoding="utf-8")
        fsync_tree(building)
        (building / BUILDING_MARKER).unlink()
        building.rename(parent / name)
        fsync_dir(parent)
        return record
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)


def _write_faiss(index, path: Path, binary: bool) -> None:
    """Write a FAISS index through Python's own file: a failed write (a full disk) is an OSError here, and FAISS
    prints nothing of its own."""
    import faiss

    with open(path, "wb") as f:
        writer = faiss.PyCallbackIOWriter(f.write)
        (faiss.write_index_binary if binary else faiss.write_index)(index, writer)
        del writer


def is_segment(folder: Path) -> bool:
    """Whether `folder` is recognisably a segment legalsearch wrote (finished, or being built)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    if (folder / BUILDING_MARKER).is_file():
        return True
    try:
        return json.loads((folder / SEGMENT_MANIFEST).read_text(encoding="utf-8")).get("format") == SEGMENT_MARKER
    except (OSError, ValueError, AttributeError):
        return False


def remove_unlisted(index: Path, listed: set[str], alive: Callable[[int], bool]) -> list[str]:
    """Remove the segments under `index` that the catalogue does not name (written by a run killed before its
    commit, or retired by a merge), and builds of dead processes; never anything legalsearch did not write."""
    parent = index / FOLDER
    removed = []
    if not parent.is_dir() or not stays_inside(index, FOLDER):  # a link leading out: nothing there is ours
        return removed
    for folder in parent.iterdir():
        if folder.name.startswith("."):
            _, _, pid = folder.name.rpartition("-")
            if not pid.isdigit() or alive(int(pid)) or not is_segment(folder):
                continue
        elif folder.name in listed or not is_segment(folder):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def _step(on_step, name: str) -> None:
    if on_step is not None:
        on_step(name)


def damaged(path: Path, what: str) -> IndexFormatError:
    return IndexFormatError(f"{path}: {what}; the index is damaged: rebuild it into a new --index")


def stays_inside(folder: Path, name: str) -> bool:
    """Whether `name`, read from an index file, names a path inside `folder`: relative, no `..`, and no link on
    the way that leads out of it."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return False
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or not parts:
        return False
    root = folder.resolve()
    target = (folder / name).resolve()
    return target == root or root in target.parents


def inside(folder: Path, name: str, named_in: Path, what: str = "a file") -> Path:
    """`folder / name` for a `name` read from the index file `named_in`; a name that leads outside `folder` makes
    the index damaged (nothing outside it is ever read, merged or removed)."""
    if not stays_inside(folder, name):
        raise damaged(named_in, f"names {what} outside {folder.name}/ ({str(name)[:80]!r})")
    return folder / name


def is_segment_name(name: object) -> bool:
    """A segment's name as `new_name` makes them: one path component, not hidden."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and not name.startswith(".")


def segment_folder(index: Path, name: str, named_in: Path) -> Path:
    """The folder of segment `name` (a name read from the catalogue `named_in`), checked to be inside the index."""
    parent = inside(index, FOLDER, named_in, "the segments folder")
    if not is_segment_name(name):
        raise damaged(named_in, f"names a segment outside {FOLDER}/ ({str(name)[:80]!r})")
    return inside(parent, name, named_in, "a segment")


class Segment:
    """An open segment: its vectors memory-mapped, its FAISS files opened on first use, its postings mapped."""

    def __init__(self, folder: Path, layout: Layout) -> None:
        self.folder = folder
        self.layout = layout
        try:
            self.record = json.loads((folder / SEGMENT_MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise damaged(folder / SEGMENT_MANIFEST, f"unreadable ({exc})") from None
        if not isinstance(self.record, dict) or not isinstance(self.record.get("rows"), int):
            raise damaged(folder / SEGMENT_MANIFEST, "not a segment record")
        self.rows = self.record["rows"]
        self.name = folder.name
        own = [VECTORS, *(f"faiss/dim-{dim}.faiss" for dim in layout.dims), lexical.FOLDER,
               *(f"{lexical.FOLDER}/{n}" for n in lexical.FILES)]  # fmt: skip
        for name in own:  # a file of the segment that is a link leading out of it is never read
            inside(folder, name, folder / SEGMENT_MANIFEST)
        self.vectors = check_npy(folder / VECTORS, (self.rows, layout.full_dim), np.float16)
        self._vectors_fd: int | None = None
        self._faiss: dict[int, object] = {}
        self._postings: lexical.Postings | None = None
        self._held: dict[int, int] = {}  # dim → an open descriptor of its FAISS file (`hold`)
        for dim in layout.dims:
            check_faiss(folder / "faiss" / f"dim-{dim}.faiss", dim, self.rows, layout.quantize == "binary")

    def hold(self) -> None:
        """Keep every file of the segment open (the vectors are mapped already; FAISS files are held by a
        descriptor and read on first use), so a reader keeps reading them even after a merge removes the
        folder — without loading FAISS files it may never search."""
        for dim in self.layout.dims:
            if dim not in self._held:
                self._held[dim] = os.open(self.folder / "faiss" / f"dim-{dim}.faiss", os.O_RDONLY)
        _ = self.postings

    def __del__(self) -> None:
        for fd in [*getattr(self, "_held", {}).values(), getattr(self, "_vectors_fd", None)]:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def read_rows(self, local: np.ndarray) -> np.ndarray:
        """The float16 vectors of some local rows. A few rows (a shortlist to rescore) are read with `pread`:
        touching a memory-mapped row pulls a megabyte or more around it into memory (read-ahead), 1.4 MB a row
        measured here, so rescoring 1,000 rows of a 1 GB file cost 800 MB of RSS; many rows come from the map."""
        local = np.asarray(local, dtype=np.int64)
        if len(local) * 20 > self.rows:
            return np.asarray(self.vectors[local])
        if self._vectors_fd is None:
            self._vectors_fd = os.open(self.folder / VECTORS, os.O_RDONLY)
        width = self.layout.full_dim * 2
        out = np.empty((len(local), self.layout.full_dim), dtype=np.float16)
        for i, row in enumerate(local.tolist()):
            out[i] = np.frombuffer(os.pread(self._vectors_fd, width, self.vectors.offset + row * width), np.float16)
        return out

    def faiss(self, dim: int):
        """The FAISS index of `dim` (memory-mapped where FAISS can), opened on first use."""
        import faiss

        index = self._faiss.get(dim)
        if index is None:
            held = self._held.get(dim)
            file = f"/proc/self/fd/{held}" if held is not None else str(self.folder / "faiss" / f"dim-{dim}.faiss")
            try:
                if self.layout.quantize == "binary":
                    index = faiss.read_index_binary(file)
                else:
                    index = faiss.read_index(file, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError as exc:
                raise IndexFormatError(f"{file}: unreadable FAISS index ({exc}); rebuild the index") from None
            if getattr(index, "hnsw", None) is not None:
                index.hnsw.efSearch = 128
            self._faiss[dim] = index
        return index

    def float_rows(self, dim: int) -> np.ndarray | None:
        """The float32 rows a flat float FAISS index of `dim` holds, as an array view of its mapped storage (None
        where the dim has no such file: float16 or quantized storage, HNSW)."""
        import faiss

        if dim not in self.layout.dims or factory(self.layout.kind, self.layout.quantize, dim) != "Flat":
            return None
        index = self.faiss(dim)
        if isinstance(index, faiss.IndexFlat) and index.ntotal:
            return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * dim).reshape(index.ntotal, dim)
        return None

    @property
    def postings(self) -> lexical.Postings:
        if self._postings is None:
            self._postings = lexical.Postings.load(self.folder / lexical.FOLDER, self.rows)
        return self._postings


def by_segment(opened: Sequence[tuple[int, Segment]], rows: np.ndarray):
    """For global `rows` and (base row, segment) pairs sorted by base row: each segment that holds some of them,
    with their positions in `rows` and their local rows."""
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows) or not opened:
        return
    bases = np.array([base for base, _ in opened], dtype=np.int64)
    owner = np.searchsorted(bases, rows, side="right") - 1
    for i in np.unique(owner):
        base, segment = opened[i]
        picked = np.flatnonzero(owner == i)
        yield segment, picked, rows[picked] - base


def check_npy(path: Path, shape: tuple | None, dtype) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise damaged(path, f"not a readable .npy array ({exc})") from None
    if shape is not None and (array.shape != shape or array.dtype != dtype):
        raise damaged(path, f"holds {array.dtype} {array.shape}, expected {np.dtype(dtype)} {shape}")
    return array


def check_faiss(path: Path, dim: int, rows: int, binary: bool) -> None:
    """A FAISS file's header: its kind, `d` and `ntotal`."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise damaged(path, f"unreadable ({exc.strerror})") from None
    fourcc = head[:4]
    if binary and fourcc in FAISS_BINARY_FOURCC and len(head) >= 20:
        d, _, ntotal = struct.unpack("<iiq", head[4:20])
    elif not binary and fourcc in FAISS_FOURCC and len(head) >= 16:
        d, ntotal = struct.unpack("<iq", head[4:16])
    else:
        raise damaged(path, "not a FAISS index of the kind the manifest records")
    if d != dim or ntotal != rows:
        raise damaged(path, f"a FAISS index of {ntotal} vectors at dim {d}, the segment holds {rows} at dim {dim}")
