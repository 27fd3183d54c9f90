"""Nothing lost, nothing wrong: `index` never writes over what legalsearch did not make (asserted byte for byte),
and a damaged or foreign index file ends in one line naming it — in `ask`, `info`, `eval`, `serve` and Python —
never in a traceback or a silently wrong answer."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from legalsearch import indexing, store
from legalsearch.cli import app
from legalsearch.errors import IndexFormatError, LegalSearchError, TargetError
from legalsearch.search import LegalSearch
from legalsearch.testing import segment_folder

from .test_index_search import LAW_A, LAW_B

runner = CliRunner()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """A user's folder of their own files: a law, notes, a sub-folder."""
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    (folder / "notes.md").write_text("mis notas\n", encoding="utf-8")
    (folder / "sub" / "data.bin").write_bytes(os.urandom(256))
    return folder


@pytest.mark.parametrize(
    ("make_args", "what"),
    [
        (lambda f, laws: [str(laws), "--index", str(f)], "a folder that is not a legalsearch index"),
        (lambda f, laws: [str(f), "--index", str(f)], "holds the sources being indexed"),
        (lambda f, laws: [str(f / "BOE-A-2099-1.txt"), "--index", str(f)], "holds the sources being indexed"),
        (lambda f, laws: [str(laws), "--index", str(f / "notes.md")], "a file, not an index folder"),
    ],
    ids=["foreign-folder", "the-sources-folder", "holds-a-source", "a-file"],
)
def test_index_refuses_what_it_did_not_make(user_folder, laws_dir, tiny_model, make_args, what) -> None:
    before = snapshot(user_folder)
    result = runner.invoke(app, ["index", *make_args(user_folder, laws_dir), "--model", str(tiny_model)])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert what in line and str(user_folder) in line and "--index" in line
    assert snapshot(user_folder) == before, "not one byte under the path changed"
    assert sorted(p.name for p in user_folder.parent.iterdir()) == sorted(["mine", "laws"]), "nothing beside it"


def test_an_empty_folder_becomes_an_index_and_a_foreign_manifest_is_refused(laws_dir, tiny_model, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    indexing.build([str(laws_dir)], empty, model=str(tiny_model), dims=[32])
    assert store.is_index(empty) and json.loads((empty / "manifest.json").read_text())["format"] == store.MARKER
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"name": "my web app", "version": 3}', encoding="utf-8")
    before = snapshot(foreign)
    with pytest.raises(TargetError, match="not a legalsearch index"):
        indexing.build([str(laws_dir)], foreign, model=str(tiny_model), dims=[32])
    assert snapshot(foreign) == before


def test_leftovers_are_removed_only_when_legalsearch_made_them(laws_dir, tiny_model, tmp_path) -> None:
    index = tmp_path / "idx"
    dead = 2**22 + 12345  # no such process
    users = tmp_path / f".idx.building-{dead}"  # a user's folder that happens to look like a leftover
    users.mkdir()
    (users / "keep.txt").write_text("mío", encoding="utf-8")
    not_an_index = tmp_path / f".idx.old-{dead}"
    not_an_index.mkdir()
    (not_an_index / "keep.txt").write_text("mío también", encoding="utf-8")
    ours = tmp_path / f".idx.building-{dead + 1}"  # a killed build of ours: it carries the marker
    ours.mkdir()
    (ours / store.BUILDING_MARKER).write_text(f"{dead + 1}\n", encoding="utf-8")
    (ours / "legalsearch.sqlite").write_bytes(b"half written")
    indexing.build([str(laws_dir)], index, model=str(tiny_model), dims=[32])
    assert (users / "keep.txt").read_text(encoding="utf-8") == "mío"
    assert (not_an_index / "keep.txt").read_text(encoding="utf-8") == "mío también"
    assert not ours.exists(), "a killed build of legalsearch's own is tidied away"
    assert store.is_index(index)


# --- damaged indexes ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, tiny_model) -> Path:
    folder = tmp_path_factory.mktemp("healthy")
    laws = folder / "laws"
    laws.mkdir()
    (laws / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    (laws / "BOE-A-2099-2.txt").write_text(LAW_B, encoding="utf-8")
    indexing.build([str(laws)], folder / "idx", model=str(tiny_model), dims=[128, 64])
    return folder / "idx"


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _manifest(index: Path, change) -> None:
    path = index / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(change(manifest)), encoding="utf-8")


def _without_dims(manifest: dict) -> dict:
    del manifest["dims"]
    return manifest


def _more_bm25_terms(index: Path) -> None:
    path = segment_folder(index) / "bm25" / "terms.json"
    terms = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps([*terms, "x"]), encoding="utf-8")


def _in_segment(index: Path, name: str) -> Path:
    return segment_folder(index) / name


NPY_INT64 = b"\x93NUMPY\x01\x00v\x00{'descr': '<i8'"  # a header that says the vectors are integers
DAMAGES = {
    "manifest-is-a-list": (lambda i: (i / "manifest.json").write_text("[]"), "manifest.json"),
    "manifest-without-dims": (lambda i: _manifest(i, _without_dims), "manifest.json"),
    "manifest-not-json": (lambda i: (i / "manifest.json").write_text("{not json"), "manifest.json"),
    "defaults-null": (lambda i: _manifest(i, lambda m: {**m, "defaults": None}), "defaults"),
    "defaults-wrong-type": (
        lambda i: _manifest(i, lambda m: {**m, "defaults": {**m["defaults"], "hybrid_weights": "x"}}), "hybrid_weights"
    ),
    "defaults-dim-text": (lambda i: _manifest(i, lambda m: {**m, "defaults": {**m["defaults"], "dim": "64"}}), "dim"),
    "sqlite-header": (lambda i: _overwrite(i / "legalsearch.sqlite", 0, b"garbage garbage!"), "legalsearch.sqlite"),
    "sqlite-page": (lambda i: _overwrite(i / "legalsearch.sqlite", 4096, os.urandom(8192)), "legalsearch.sqlite"),
    "vectors-header": (lambda i: _overwrite(_in_segment(i, "vectors.f16.npy"), 0, NPY_INT64), "vectors"),
    "faiss-header": (
        lambda i: _overwrite(_in_segment(i, "faiss/dim-64.faiss"), 4, b"\x80\x00\x00\x00"), "dim-64.faiss"
    ),
    "faiss-swapped": (
        lambda i: shutil.copy(_in_segment(i, "faiss/dim-64.faiss"), _in_segment(i, "faiss/dim-128.faiss")), "dim-128"
    ),
    "bm25-terms": (_more_bm25_terms, "bm25"),
    "vectors-missing": (lambda i: _in_segment(i, "vectors.f16.npy").unlink(), "vectors.f16.npy"),
}  # fmt: skip


@pytest.fixture(params=sorted(DAMAGES))
def damaged(request, healthy, tmp_path) -> tuple[Path, str]:
    index = tmp_path / "damaged"
    shutil.copytree(healthy, index)
    damage, named = DAMAGES[request.param]
    damage(index)
    return index, named


def test_a_damaged_index_is_one_line_everywhere(damaged, tmp_path, monkeypatch) -> None:
    import uvicorn

    def started(*args, **kwargs):
        raise AssertionError("serve started on a damaged index")

    monkeypatch.setattr(uvicorn, "run", started)
    index, named = damaged
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "vacaciones", "boe_id": "BOE-A-2099-1", "article": "1"}\n', encoding="utf-8")
    for args in (
        ["ask", "vacaciones anuales", "--index", str(index)],
        ["ask", "vacaciones anuales", "--index", str(index), "--mode", "lexical"],
        ["info", "--index", str(index)],
        ["eval", str(questions), "--index", str(index)],
        ["serve", "--index", str(index)],  # refuses to start
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        line = one_error_line(result)
        assert named in line and ("rebuild" in line or "build" in line), line
    with pytest.raises(LegalSearchError) as caught:
        LegalSearch.open(index).search("vacaciones anuales", k=2, mode="hybrid")
    assert isinstance(caught.value, IndexFormatError) and named in str(caught.value)
    before = snapshot(index)
    result = runner.invoke(app, ["index", str(tmp_path / "none.txt"), "--index", str(index)])
    assert result.exit_code != 0 and snapshot(index) == before, "a damaged index is never written over"


def test_same_size_payload_corruption_is_caught_by_verify(healthy, tmp_path) -> None:
    index = tmp_path / "flipped"
    shutil.copytree(healthy, index)
    file = segment_folder(index) / "vectors.f16.npy"
    vectors = np.load(file)
    offset = file.stat().st_size - vectors.nbytes + 10  # inside the payload
    _overwrite(file, offset, b"\x00\x7c")  # a half-precision infinity
    result = runner.invoke(app, ["info", "--index", str(index), "--verify"])
    assert result.exit_code == 1
    assert f"checksum mismatch in {file.relative_to(index)}" in one_error_line(result)
    result = runner.invoke(app, ["info", "--index", str(healthy), "--verify"])
    assert result.exit_code == 0 and "checksums  ok: all" in result.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    ("table", "column"), [("articles", "text"), ("chunks", "text"), ("laws", "title"), ("articles", "heading")]
)
def test_same_size_corruption_of_the_catalogue_is_caught_by_verify(healthy, tmp_path, table, column) -> None:
    import sqlite3

    index = tmp_path / "flipped"
    shutil.copytree(healthy, index)
    database = index / "legalsearch.sqlite"
    size = database.stat().st_size
    connection = sqlite3.connect(database)
    with connection:  # one character for another, in place: the same size, SQLite's structure intact
        found = connection.execute(f"SELECT rowid, {column} FROM {table} WHERE {column} LIKE '%a%' LIMIT 1").fetchone()
        changed = found[1].replace("a", "X", 1)
        connection.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (changed, found[0]))
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    assert database.stat().st_size == size
    result = runner.invoke(app, ["info", "--index", str(index), "--verify"])
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert "checksum mismatch in legalsearch.sqlite (the rows of BOE-A-2099-" in line and "rebuild" in line, line


def test_digests_follow_updates_merges_and_removals(laws_dir, tiny_model, tmp_path) -> None:
    from legalsearch.embedding import load_encoder

    index, encoder = tmp_path / "idx", load_encoder(str(tiny_model))
    indexing.build([str(laws_dir / "BOE-A-2099-1.txt")], index, encoder=encoder, dims=[32])
    indexing.build([str(laws_dir)], index, encoder=encoder)  # an update: a second segment
    indexing.build([str(laws_dir / "BOE-A-2099-2.txt")], index, encoder=encoder, replace=True)  # a removal
    with store.WriterLock(index):
        store.compact(index)  # rows renumbered: the digests do not depend on them
    assert store.verify_checksums(index, store.read_manifest(index)) == []
    result = runner.invoke(app, ["info", "--index", str(index), "--verify"])
    assert result.exit_code == 0 and "checksums  ok" in result.stdout
