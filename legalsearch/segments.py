"""Segments: the immutable parts of an index that hold its chunks' vectors, FAISS files and BM25 postings.

    segments/<name>/segment.json        marker, row count, dims, the checksum of every file
    segments/<name>/vectors.f16.npy     full-dim unit vectors, one row per chunk of the segment
    segments/<name>/faiss/dim-<d>.faiss per built Matryoshka dim: re-normalised prefixes, inner product
    segments/<name>/bm25/               term postings (lexical.Postings)

Each of those files belongs to one segment component (`segment_components`: Vectors, Faiss per dim, Postings),
which writes it, merges it and opens it; this module writes, merges and opens a segment by going through them.
A segment is written under a hidden building name, flushed to disk and renamed into place; it is never
changed after that. Which segments an index is made of, and which of their rows are deleted, is the catalogue's
business (`catalogue.py`): a segment no catalogue names is a leftover of a killed run, and `tidy` removes it.
Global chunk row = the segment's `base_row` (in the catalogue) + its local row.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from . import lexical
from .files import rename_into_place, seal, sha256_file
from .segment_components import FAISS_KINDS as FAISS_KINDS
from .segment_components import HALF_ABOVE as HALF_ABOVE
from .segment_components import QUANTIZATIONS as QUANTIZATIONS
from .segment_components import VECTORS as VECTORS
from .segment_components import Chunks, Component, Kept, Layout, components, faiss_name
from .segment_components import build_faiss as build_faiss
from .segment_components import check_faiss as check_faiss
from .segment_components import check_npy as check_npy
from .segment_components import damaged as damaged
from .segment_components import factory as factory

FOLDER = "segments"
SEGMENT_MANIFEST = "segment.json"
SEGMENT_MARKER = "legalsearch-segment"
BUILDING_MARKER = ".legalsearch-building"


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
    whole or not at all: each component writes its files. Its record (name, rows, files). `postings`, when given,
    are the texts' BM25 postings already built."""
    chunks = Chunks(np.asarray(vectors, dtype=np.float16), texts, postings)
    return _build(index, layout, len(chunks.vectors), name, on_step, lambda c, folder: c.write(folder, chunks))


def merge(
    index: Path,
    parts: Sequence[tuple[Segment, np.ndarray]],
    layout: Layout,
    on_step: Callable[[str], None] | None = None,
) -> dict:
    """Write one segment into `index/segments/` from (open segment, its local rows to keep) pairs, rows renumbered
    in order, whole or not at all: each component merges its own files. Its record (name, rows, files)."""
    kept = [Kept(segment, np.asarray(rows, dtype=np.int64)) for segment, rows in parts]
    rows = sum(len(k.rows) for k in kept)
    return _build(index, layout, rows, None, on_step, lambda c, folder: c.merge(kept, folder))


def _build(
    index: Path,
    layout: Layout,
    rows: int,
    name: str | None,
    on_step: Callable[[str], None] | None,
    fill: Callable[[Component, Path], None],
) -> dict:
    """A segment of `rows` rows whose components `fill` writes, built under a hidden name, flushed and renamed
    into place; its record."""
    name = name or new_name()
    parent = index / FOLDER
    parent.mkdir(parents=True, exist_ok=True)
    building = parent / f".{name}.building-{os.getpid()}"
    building.mkdir()
    (building / BUILDING_MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        owned = components(layout)
        for component in owned:
            fill(component, building)
            _step(on_step, component.name)
        record = {"format": SEGMENT_MARKER, "name": name, "rows": rows, "dims": list(layout.dims),
                  "full_dim": layout.full_dim, "files": _checksums(building, owned)}  # fmt: skip
        (building / SEGMENT_MANIFEST).write_text(json.dumps(record, indent=1), encoding="utf-8")
        seal(building, BUILDING_MARKER)
        rename_into_place(building, parent / name)
        return record
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)


def _checksums(building: Path, owned: Sequence[Component]) -> dict:
    """Bytes and sha256 of every component's files, in path order. A file no component owns, or one it owns and
    did not write, is a bug in that component (its file would go unchecked)."""
    names = sorted((n for c in owned for n in c.files()), key=lambda n: PurePosixPath(n).parts)
    found = {str(p.relative_to(building)) for p in building.rglob("*") if p.is_file() and p.name != BUILDING_MARKER}
    if found != set(names):
        raise RuntimeError(f"segment components wrote {sorted(found)}, they own {names}")
    return {n: {"bytes": (building / n).stat().st_size, "sha256": sha256_file(building / n)} for n in names}


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
    """An open segment: what each of its components opened (vectors memory-mapped, FAISS files opened on first
    use, postings mapped on first use), checked as they are opened."""

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
        owned = components(layout)
        for component in owned:  # a file of the segment that is a link leading out of it is never read
            for name in component.paths():
                inside(folder, name, folder / SEGMENT_MANIFEST)
        self._parts = {component.name: component.open(folder, self.rows) for component in owned}

    def part(self, name: str):
        """What the component `name` opened of this segment (`segment_components`)."""
        return self._parts[name]

    def hold(self) -> None:
        """Keep every file of the segment open (the vectors are mapped already; FAISS files are held by a
        descriptor and read on first use), so a reader keeps reading them even after a merge removes the
        folder — without loading FAISS files it may never search."""
        for opened in self._parts.values():
            if hasattr(opened, "hold"):
                opened.hold()

    @property
    def vectors(self) -> np.ndarray:
        """The full-dim float16 vectors, memory-mapped."""
        return self.part(VECTORS).array

    def read_rows(self, local: np.ndarray) -> np.ndarray:
        """The float16 vectors of some local rows (a few read with `pread`, many from the map)."""
        return self.part(VECTORS).read_rows(local)

    def faiss(self, dim: int):
        """The FAISS index of `dim` (memory-mapped where FAISS can), opened on first use."""
        opened = self._parts.get(faiss_name(dim))
        if opened is None:
            raise damaged(self.folder / faiss_name(dim), f"no FAISS file at dim {dim} in this index")
        return opened.index()

    def float_rows(self, dim: int) -> np.ndarray | None:
        """The float32 rows a flat float FAISS index of `dim` holds, as an array view of its mapped storage (None
        where the dim has no such file: float16 or quantized storage, HNSW)."""
        opened = self._parts.get(faiss_name(dim))
        return None if opened is None else opened.float_rows()

    @property
    def postings(self) -> lexical.Postings:
        return self.part(lexical.FOLDER).get()


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
