"""Segment components: the parts of a segment, each owning its files when a segment is written, merged and opened
(as Tantivy's segment components do).

    Vectors    vectors.f16.npy        full-dim unit vectors (float16), one row per chunk
    Faiss      faiss/dim-<d>.faiss    one per built Matryoshka dim: re-normalised prefixes, inner product
    Postings   bm25/                  BM25 postings (lexical.Postings)

`segments.write`, `segments.merge` and `segments.Segment` name no component: they go through `components(layout)`,
the three above in that order, then any added with `register`. A component writes its files from the chunks of a
new segment, merges them from the live rows of several segments, and opens them (checked) for readers; its files
are checksummed in segment.json with the others. A later per-chunk component (a sparse or multi-vector retriever)
is one new class and one `register` call. Components are written in order: one may read the files of those
before it in the segment being built (FAISS files are built from the segment's vectors).
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import lexical
from .errors import IndexFormatError
from .matryoshka import matryoshka

if TYPE_CHECKING:
    from .segments import Segment

VECTORS = "vectors.f16.npy"
FAISS_KINDS = ("flat", "hnsw")
QUANTIZATIONS = ("none", "int8", "binary")
# Float FAISS files above this dim store float16 codes (SQfp16): the same float16 values the vector file holds,
# half the bytes of float32. The small dims the funnel scans stay float32 (`Flat`), the fastest to scan.
HALF_ABOVE = 128
FAISS_FOURCC = {b"IxF2", b"IxFI", b"IxHf", b"IxHF", b"IHNf", b"IxSQ", b"IHNs", b"IxSq"}
FAISS_BINARY_FOURCC = {b"IBxF", b"IBHf", b"IBHF"}


@dataclass(frozen=True)
class Layout:
    """What every segment of one index holds: the model's full dim, the dims with a FAISS file, their kind."""

    full_dim: int
    dims: tuple[int, ...]
    kind: str = "flat"
    quantize: str = "none"


@dataclass(frozen=True)
class Chunks:
    """What a new segment is written from: the chunks' full-dim vectors (float16) and texts, row i = chunk i, and
    their BM25 postings when the pipeline has analysed the texts already."""

    vectors: np.ndarray
    texts: Sequence[str]
    postings: lexical.Postings | None = None


@dataclass(frozen=True)
class Kept:
    """One segment in a merge: the segment (open) and its local rows that stay (the live ones, ascending)."""

    segment: Segment
    rows: np.ndarray


class Component:
    """One part of a segment. `name`: the file or folder it owns in the segment (also the step shown once it is
    written, and the key of what it opened: `Segment.part(name)`)."""

    name: str

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def files(self) -> list[str]:
        """Its files, relative to the segment's folder: each is checksummed in segment.json."""
        raise NotImplementedError

    def paths(self) -> list[str]:
        """The paths an open checks to lead nowhere outside the segment's folder before reading them."""
        return self.files()

    def write(self, folder: Path, chunks: Chunks) -> None:
        """Write its files into the folder of a new segment from its chunks."""
        raise NotImplementedError

    def merge(self, parts: Sequence[Kept], folder: Path) -> None:
        """Write its files into the folder of a new segment from the kept rows of `parts`, renumbered in order."""
        raise NotImplementedError

    def open(self, folder: Path, rows: int) -> object:
        """What readers use of its files in a finished segment of `rows` rows, checked (cheaply) first."""
        raise NotImplementedError


# --- the vectors ------------------------------------------------------------------------------------------------


class Vectors(Component):
    """`vectors.f16.npy`: the full-dim unit vectors, float16, one row per chunk."""

    name = VECTORS

    def files(self) -> list[str]:
        return [VECTORS]

    def write(self, folder: Path, chunks: Chunks) -> None:
        np.save(folder / VECTORS, np.asarray(chunks.vectors, dtype=np.float16), allow_pickle=False)

    def merge(self, parts: Sequence[Kept], folder: Path) -> None:
        kept = [np.asarray(p.segment.part(VECTORS).array[p.rows]) for p in parts]
        vectors = np.concatenate(kept) if kept else np.zeros((0, self.layout.full_dim), np.float16)
        np.save(folder / VECTORS, np.asarray(vectors, dtype=np.float16), allow_pickle=False)

    def open(self, folder: Path, rows: int) -> OpenVectors:
        return OpenVectors(folder / VECTORS, check_npy(folder / VECTORS, (rows, self.layout.full_dim), np.float16))


class OpenVectors:
    """A segment's vectors, memory-mapped; a few rows read with `pread` (`read_rows`)."""

    def __init__(self, path: Path, array: np.ndarray) -> None:
        self.path = path
        self.array = array
        self._fd: int | None = None

    def read_rows(self, local: np.ndarray) -> np.ndarray:
        """The float16 vectors of some local rows. A few rows (a shortlist to rescore) are read with `pread`:
        touching a memory-mapped row pulls a megabyte or more around it into memory (read-ahead), 1.4 MB a row
        measured here, so rescoring 1,000 rows of a 1 GB file cost 800 MB of RSS; many rows come from the map."""
        local = np.asarray(local, dtype=np.int64)
        rows, full_dim = self.array.shape
        if len(local) * 20 > rows:
            return np.asarray(self.array[local])
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        width = full_dim * 2
        out = np.empty((len(local), full_dim), dtype=np.float16)
        for i, row in enumerate(local.tolist()):
            out[i] = np.frombuffer(os.pread(self._fd, width, self.array.offset + row * width), np.float16)
        return out

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)


def check_npy(path: Path, shape: tuple | None, dtype) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise damaged(path, f"not a readable .npy array ({exc})") from None
    if shape is not None and (array.shape != shape or array.dtype != dtype):
        raise damaged(path, f"holds {array.dtype} {array.shape}, expected {np.dtype(dtype)} {shape}")
    return array


# --- FAISS, one file per dim ----------------------------------------------------------------------------------


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


def faiss_name(dim: int) -> str:
    return f"faiss/dim-{dim}.faiss"


class Faiss(Component):
    """`faiss/dim-<d>.faiss`: the FAISS index of one Matryoshka dim, built from the segment's vectors."""

    def __init__(self, layout: Layout, dim: int) -> None:
        super().__init__(layout)
        self.dim = dim
        self.name = faiss_name(dim)

    def files(self) -> list[str]:
        return [self.name]

    def write(self, folder: Path, chunks: Chunks) -> None:
        self._build(folder, np.asarray(chunks.vectors, dtype=np.float16))

    def merge(self, parts: Sequence[Kept], folder: Path) -> None:
        # the merged vectors, as the Vectors component (before this one) has just written them
        self._build(folder, np.load(folder / VECTORS, mmap_mode="r", allow_pickle=False))

    def _build(self, folder: Path, vectors: np.ndarray) -> None:
        (folder / "faiss").mkdir(exist_ok=True)
        built = build_faiss(vectors, self.dim, self.layout.kind, self.layout.quantize)
        _write_faiss(built, folder / self.name, self.layout.quantize == "binary")

    def open(self, folder: Path, rows: int) -> OpenFaiss:
        binary = self.layout.quantize == "binary"
        check_faiss(folder / self.name, self.dim, rows, binary)
        flat = factory(self.layout.kind, self.layout.quantize, self.dim) == "Flat"
        return OpenFaiss(folder / self.name, self.dim, binary, flat)


class OpenFaiss:
    """A segment's FAISS file of one dim, read (memory-mapped where FAISS can) on first use."""

    def __init__(self, path: Path, dim: int, binary: bool, flat: bool) -> None:
        self.path, self.dim, self.binary, self.flat = path, dim, binary, flat
        self._index = None
        self._held: int | None = None  # an open descriptor of the file (`hold`)

    def hold(self) -> None:
        """Keep the file open by a descriptor (read through it on first use), so a reader keeps reading it even
        after a merge removes the folder — without loading a FAISS file it may never search."""
        if self._held is None:
            self._held = os.open(self.path, os.O_RDONLY)

    def index(self):
        import faiss

        if self._index is None:
            file = f"/proc/self/fd/{self._held}" if self._held is not None else str(self.path)
            try:
                if self.binary:
                    index = faiss.read_index_binary(file)
                else:
                    index = faiss.read_index(file, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError as exc:
                raise IndexFormatError(f"{file}: unreadable FAISS index ({exc}); rebuild the index") from None
            if getattr(index, "hnsw", None) is not None:
                index.hnsw.efSearch = 128
            self._index = index
        return self._index

    def float_rows(self) -> np.ndarray | None:
        """The float32 rows of a flat float index, as an array view of its mapped storage (None otherwise)."""
        import faiss

        if not self.flat:
            return None
        index = self.index()
        if isinstance(index, faiss.IndexFlat) and index.ntotal:
            return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * self.dim).reshape(index.ntotal, self.dim)
        return None

    def __del__(self) -> None:
        if getattr(self, "_held", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._held)


def _write_faiss(index, path: Path, binary: bool) -> None:
    """Write a FAISS index through Python's own file: a failed write (a full disk) is an OSError here, and FAISS
    prints nothing of its own."""
    import faiss

    with open(path, "wb") as f:
        writer = faiss.PyCallbackIOWriter(f.write)
        (faiss.write_index_binary if binary else faiss.write_index)(index, writer)
        del writer


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


# --- BM25 postings ----------------------------------------------------------------------------------------------


class Postings(Component):
    """`bm25/`: the chunks' BM25 postings; a merge renumbers them and re-tokenises nothing."""

    name = lexical.FOLDER

    def files(self) -> list[str]:
        return [f"{lexical.FOLDER}/{n}" for n in lexical.FILES]

    def paths(self) -> list[str]:
        return [lexical.FOLDER, *self.files()]

    def write(self, folder: Path, chunks: Chunks) -> None:
        (chunks.postings or lexical.Postings.build(chunks.texts)).save(folder / lexical.FOLDER)

    def merge(self, parts: Sequence[Kept], folder: Path) -> None:
        merged = lexical.Postings.merge([(p.segment.part(self.name).get(), p.rows) for p in parts])
        merged.save(folder / lexical.FOLDER)

    def open(self, folder: Path, rows: int) -> OpenPostings:
        return OpenPostings(folder / lexical.FOLDER, rows)


class OpenPostings:
    """A segment's postings, mapped (and their shapes checked) on first use."""

    def __init__(self, folder: Path, rows: int) -> None:
        self.folder, self.rows = folder, rows
        self._postings: lexical.Postings | None = None

    def hold(self) -> None:
        self.get()

    def get(self) -> lexical.Postings:
        if self._postings is None:
            self._postings = lexical.Postings.load(self.folder, self.rows)
        return self._postings


# --- which components a segment has -------------------------------------------------------------------------

Factory = Callable[[Layout], "Component | Iterable[Component]"]


def _built_in(layout: Layout) -> list[Component]:
    return [Vectors(layout), *(Faiss(layout, dim) for dim in layout.dims), Postings(layout)]


_FACTORIES: list[Factory] = [_built_in]


def register(factory: Factory) -> Factory:
    """Add a component to every segment written, merged or opened from now on in this process: `factory` (a
    Component class, or a function) makes it, or several, for a layout. Segments written without it do not have
    its files: an index has a new component once it is built again (into a new --index)."""
    _FACTORIES.append(factory)
    return factory


def unregister(factory: Factory) -> None:
    _FACTORIES.remove(factory)


def components(layout: Layout) -> list[Component]:
    """The components of a segment of `layout`, in the order they are written."""
    made: list[Component] = []
    for make in _FACTORIES:
        out = make(layout)
        made.extend([out] if isinstance(out, Component) else out)
    names = [c.name for c in made]
    if len(set(names)) != len(names):
        raise ValueError(f"two segment components own the same name: {names}")
    return made


def damaged(path: Path, what: str) -> IndexFormatError:
    return IndexFormatError(f"{path}: {what}; the index is damaged: rebuild it into a new --index")
