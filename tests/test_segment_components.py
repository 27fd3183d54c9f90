"""Segment components: each owns its files at write, merge and open, so a new per-chunk component is one class —
written with every segment, checksummed in segment.json, merged from the live rows only and read back."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from legalsearch import indexing, segment_components, segments, store
from legalsearch.errors import IndexFormatError
from legalsearch.files import sha256_file
from legalsearch.search import LegalSearch
from legalsearch.segment_components import Chunks, Component, Kept, check_npy

from .test_index_search import LAW_A, LAW_B
from .test_segments import LAW_C

LENGTHS = "text-lengths.i32.npy"


class TextLengths(Component):
    """A toy per-chunk component: the length of each chunk's text, in characters."""

    name = LENGTHS

    def files(self) -> list[str]:
        return [LENGTHS]

    def write(self, folder: Path, chunks: Chunks) -> None:
        np.save(folder / LENGTHS, np.array([len(t) for t in chunks.texts], dtype=np.int32), allow_pickle=False)

    def merge(self, parts: list[Kept], folder: Path) -> None:
        kept = [np.asarray(p.segment.part(LENGTHS)[p.rows]) for p in parts]
        np.save(folder / LENGTHS, np.concatenate(kept).astype(np.int32), allow_pickle=False)

    def open(self, folder: Path, rows: int) -> np.ndarray:
        return check_npy(folder / LENGTHS, (rows,), np.int32)


@pytest.fixture
def with_lengths():
    segment_components.register(TextLengths)
    try:
        yield
    finally:
        segment_components.unregister(TextLengths)


@pytest.fixture
def laws(tmp_path: Path) -> Path:
    folder = tmp_path / "laws"
    folder.mkdir()
    for boe_id, text in {"BOE-A-2099-1": LAW_A, "BOE-A-2099-2": LAW_B, "BOE-A-2099-4": LAW_C}.items():
        (folder / f"{boe_id}.txt").write_text(text, encoding="utf-8")
    return folder


def _build(laws: Path, names: list[str], index: Path, encoder, **options):
    return indexing.build([str(laws / f"{n}.txt") for n in names], index, encoder=encoder, max_tokens=96, **options)


def _texts_by_row(index: Path) -> dict[int, str]:
    connection = sqlite3.connect(index / store.DATABASE)
    try:
        return dict(connection.execute("SELECT row, text FROM chunks"))
    finally:
        connection.close()


def _opened(index: Path) -> list[tuple[dict, segments.Segment]]:
    manifest = store.read_manifest(index)
    layout = store.layout_of(manifest)
    return [(p, segments.Segment(index / segments.FOLDER / p["name"], layout)) for p in manifest["segments"]]


def _assert_lengths_match_the_catalogue(index: Path) -> None:
    """Every live chunk's text length is at its row of its segment's lengths file, which is checksummed."""
    texts = _texts_by_row(index)
    for part, segment in _opened(index):
        lengths = segment.part(LENGTHS)
        assert len(lengths) == segment.rows == part["rows"]
        entry = segment.record["files"][LENGTHS]
        path = segment.folder / LENGTHS
        assert entry == {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        for row in range(part["base_row"], part["base_row"] + part["rows"]):
            if row in texts:
                assert lengths[row - part["base_row"]] == len(texts[row]), row


def test_a_registered_component_is_written_checksummed_merged_and_read_back(
    laws, tmp_path, encoder, with_lengths, monkeypatch
) -> None:
    monkeypatch.setattr(store, "MAX_DELETED_SHARE", 1.0)  # no automatic merge: keep the deleted rows around
    index = tmp_path / "idx"
    for name in ("BOE-A-2099-1", "BOE-A-2099-2", "BOE-A-2099-4"):
        _build(laws, [name], index, encoder)
    _build(laws, ["BOE-A-2099-1", "BOE-A-2099-4"], index, encoder, replace=True)  # BOE-A-2099-2's rows deleted
    manifest = store.read_manifest(index)
    assert len(manifest["segments"]) == 3 and sum(p["deleted"] for p in manifest["segments"]) > 0
    _assert_lengths_match_the_catalogue(index)
    assert store.verify_checksums(index, manifest) == [], "the index's checksums cover the new files"
    live = len(_texts_by_row(index))

    with store.WriterLock(index):
        merged = store.compact(index)
    assert merged["merged"] == 3 and merged["rows"] == live
    ((part, segment),) = _opened(index)
    assert part["deleted"] == 0 and segment.rows == live == len(segment.part(LENGTHS)), "the live rows only"
    assert sorted(_texts_by_row(index)) == list(range(live))
    _assert_lengths_match_the_catalogue(index)
    assert store.verify_checksums(index, store.read_manifest(index)) == []
    assert LegalSearch.open(index, encoder=encoder).search("fianza en metálico", k=1, mode="hybrid")

    # its files are checked like every other: same-size corruption by the checksums, a wrong shape at open
    path = segment.folder / LENGTHS
    array = np.load(path)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size - array.nbytes)
        f.write((array + 1).tobytes())
    assert store.verify_checksums(index, store.read_manifest(index)) == [f"segments/{part['name']}/{LENGTHS}"]
    np.save(path, array[:-1], allow_pickle=False)
    with pytest.raises(IndexFormatError, match=re.escape(LENGTHS)):
        segments.Segment(segment.folder, store.layout_of(store.read_manifest(index)))


def test_segment_json_lists_every_file_of_the_segment_in_path_order(laws, tmp_path, encoder) -> None:
    index = tmp_path / "idx"
    _build(laws, ["BOE-A-2099-1", "BOE-A-2099-4"], index, encoder, dims=[128, 32])
    ((_, segment),) = _opened(index)
    record = json.loads((segment.folder / segments.SEGMENT_MANIFEST).read_text(encoding="utf-8"))
    assert list(record) == ["format", "name", "rows", "dims", "full_dim", "files"]
    on_disk = sorted(p for p in segment.folder.rglob("*") if p.is_file() and p.name != segments.SEGMENT_MANIFEST)
    assert list(record["files"]) == [str(p.relative_to(segment.folder)) for p in on_disk]
    assert list(record["files"]) == [
        "bm25/docs.npy", "bm25/indptr.npy", "bm25/lengths.npy", "bm25/terms.json", "bm25/tfs.npy",
        "faiss/dim-128.faiss", "faiss/dim-32.faiss", "vectors.f16.npy",
    ]  # fmt: skip


class Stray(TextLengths):
    """A component that writes a file it does not own: it would go unchecked."""

    def write(self, folder: Path, chunks: Chunks) -> None:
        super().write(folder, chunks)
        (folder / "stray.bin").write_bytes(b"x")


def test_a_file_no_component_owns_fails_the_write_and_leaves_nothing(tmp_path) -> None:
    layout = segments.Layout(8, (8,))
    segment_components.register(Stray)
    try:
        with pytest.raises(RuntimeError, match=re.escape("stray.bin")):
            segments.write(tmp_path, np.eye(8, dtype=np.float32)[:3], ["a", "b", "c"], layout)
    finally:
        segment_components.unregister(Stray)
    assert list((tmp_path / segments.FOLDER).iterdir()) == []
    record = segments.write(tmp_path, np.eye(8, dtype=np.float32)[:3], ["a", "b", "c"], layout)
    assert LENGTHS not in record["files"] and "stray.bin" not in record["files"]
