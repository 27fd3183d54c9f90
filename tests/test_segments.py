"""The segmented index: updates that write what changed, atomic commits (kill -9 at each stage), one writer at a
time, readers that move to the next commit, merges, and the same answers as an index built at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch import indexing, store
from legalsearch.cli import app
from legalsearch.ranking import Priors
from legalsearch.search import SEARCH_MODES, LegalSearch

from .test_index_search import LAW_A, LAW_B, long_article_law

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
QUERIES = ["vacaciones anuales retribuidas", "notificaciones electrónicas", "mayoría de edad", "plazo de preaviso"]
LAW_C = """Ley 4/2099, de garantías de prueba. BOE-A-2099-4
Artículo 1. Garantía.
La garantía adicional podrá pactarse libremente por las partes.
Artículo 2. Depósito.
A la celebración del contrato se depositará la fianza en metálico en el organismo autonómico.
"""


@pytest.fixture
def laws(tmp_path: Path) -> Path:
    folder = tmp_path / "laws"
    folder.mkdir()
    texts = {"BOE-A-2099-1": LAW_A, "BOE-A-2099-2": LAW_B, "BOE-A-2099-3": long_article_law(), "BOE-A-2099-4": LAW_C}
    for boe_id, text in texts.items():
        (folder / f"{boe_id}.txt").write_text(text, encoding="utf-8")
    return folder


def _build(laws: Path, names: list[str], index: Path, encoder, **options):
    return indexing.build([str(laws / f"{n}.txt") for n in names], index, encoder=encoder, max_tokens=96, **options)


def _ranking(search: LegalSearch, mode: str) -> list[list[tuple]]:
    """Each query's hits as (law, article, score to 1e-5), ties in score ordered by key: what must not depend
    on which segment holds a chunk."""
    ranked = []
    for query in QUERIES:
        hits = search.search(query, k=8, mode=mode, priors=Priors.none())
        ranked.append(sorted((-round(h.score, 5), h.boe_id, h.article_id) for h in hits))
    return ranked


def test_an_update_writes_a_segment_and_leaves_the_others_alone(laws, tmp_path, encoder) -> None:
    index = tmp_path / "idx"
    _build(laws, ["BOE-A-2099-1", "BOE-A-2099-2"], index, encoder)
    first = store.read_manifest(index)
    (segment,) = first["segments"]
    old = {p: p.stat().st_mtime_ns for p in (index / "segments" / segment["name"]).rglob("*")}
    report = _build(laws, ["BOE-A-2099-4"], index, encoder)
    after = store.read_manifest(index)
    assert after["commit"] == first["commit"] + 1 and report.commit == after["commit"]
    assert after["segments"][0]["name"] == segment["name"] and len(after["segments"]) == 2
    assert {p: p.stat().st_mtime_ns for p in (index / "segments" / segment["name"]).rglob("*")} == old
    assert after["segments"][1]["rows"] == report.embedded == 2, "only the new law's chunks were written"
    assert after["counts"]["laws"] == 3 and report.laws == 3


def test_a_segmented_index_ranks_as_one_built_at_once(laws, tmp_path, encoder, monkeypatch) -> None:
    """Laws added one commit at a time, one changed and one removed, against a single build of the final laws:
    the same rankings in every mode (BM25 statistics are collection-wide, deleted rows are out of everything)."""
    monkeypatch.setattr(store, "MAX_DELETED_SHARE", 1.0)  # no automatic merge: keep the deleted rows around
    changed = LAW_B.replace("duración pactada", "duración libremente pactada")
    segmented = tmp_path / "segmented"
    for name in ("BOE-A-2099-1", "BOE-A-2099-2", "BOE-A-2099-3", "BOE-A-2099-4"):
        _build(laws, [name], segmented, encoder)
    (laws / "BOE-A-2099-2.txt").write_text(changed, encoding="utf-8")
    _build(laws, ["BOE-A-2099-2"], segmented, encoder)
    final = ["BOE-A-2099-1", "BOE-A-2099-2", "BOE-A-2099-4"]
    _build(laws, final, segmented, encoder, replace=True)  # BOE-A-2099-3 removed
    manifest = store.read_manifest(segmented)
    assert len(manifest["segments"]) > 1 and sum(s["deleted"] for s in manifest["segments"]) > 0
    single = tmp_path / "single"
    _build(laws, final, single, encoder)
    one, many = LegalSearch.open(single, encoder=encoder), LegalSearch.open(segmented, encoder=encoder)
    assert one.manifest["counts"] == many.manifest["counts"]
    for mode in SEARCH_MODES:
        assert _ranking(many, mode) == _ranking(one, mode), mode
    assert {h.boe_id for q in QUERIES for h in many.search(q, k=20, mode="lexical")} <= set(final)
    # a merge drops the deleted rows and changes no answer
    with store.WriterLock(segmented):
        merged = store.compact(segmented)
    assert merged["merged"] == len(manifest["segments"])
    compacted = LegalSearch.open(segmented, encoder=encoder)
    assert len(compacted.manifest["segments"]) == 1 and compacted.manifest["segments"][0]["deleted"] == 0
    for mode in SEARCH_MODES:
        assert _ranking(compacted, mode) == _ranking(one, mode), mode


def test_small_segments_are_merged_past_the_threshold(laws, tmp_path, encoder, monkeypatch) -> None:
    monkeypatch.setattr(store, "MAX_SEGMENTS", 2)
    index = tmp_path / "idx"
    _build(laws, ["BOE-A-2099-3"], index, encoder)
    _build(laws, ["BOE-A-2099-1"], index, encoder)
    report = _build(laws, ["BOE-A-2099-2"], index, encoder)
    assert report.compacted is not None and report.compacted["merged"] == 2
    manifest = store.read_manifest(index)
    assert len(manifest["segments"]) == 2 and manifest["counts"]["laws"] == 3
    assert len(list((index / "segments").iterdir())) == 2, "merged segments' folders are gone"
    result = runner.invoke(app, ["index", "--compact", "--index", str(index)])
    assert result.exit_code == 0 and "merged 2 segments into one" in result.stdout
    assert len(store.read_manifest(index)["segments"]) == 1


KILLED = """
import sys
from pathlib import Path
from legalsearch import indexing, store
from legalsearch.embedding import load_encoder
if sys.argv[3] == "compact":
    with store.WriterLock(Path(sys.argv[2])):
        store.compact(Path(sys.argv[2]))
else:
    indexing.build([sys.argv[3]], Path(sys.argv[2]), encoder=load_encoder(sys.argv[1]), max_tokens=96)
"""


@pytest.mark.parametrize("job", ["update", "compact"])
@pytest.mark.parametrize("stage", ["segment-written", "before-commit", "committed"])
def test_kill_9_at_each_stage_keeps_a_committed_state(laws, tmp_path, encoder, tiny_model, stage, job) -> None:
    index = tmp_path / "idx"
    _build(laws, ["BOE-A-2099-1"], index, encoder)
    _build(laws, ["BOE-A-2099-2"], index, encoder)
    before = LegalSearch.open(index, encoder=encoder)
    expected = _ranking(before, "hybrid")
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLED))
    target = "compact" if job == "compact" else str(laws / "BOE-A-2099-4.txt")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LEGALSEARCH_KILL_AT": stage}
    result = subprocess.run([sys.executable, str(script), str(tiny_model), str(index), target], env=env)
    assert result.returncode == -9, "killed at the stage"
    after = LegalSearch.open(index, encoder=encoder)
    committed = stage == "committed"
    laws_now = {law["boe_id"] for law in after.laws()}
    assert ("BOE-A-2099-4" in laws_now) == (committed and job == "update")
    assert _ranking(after, "hybrid") == expected or (committed and job == "update")
    assert before.search(QUERIES[0], k=3), "a reader of the previous commit still answers"
    # the next run finishes the job and leaves nothing behind
    report = _build(laws, ["BOE-A-2099-4"], index, encoder)
    assert report.laws == 3 and (report.up_to_date == (committed and job == "update"))
    listed = {s["name"] for s in store.read_manifest(index)["segments"]}
    assert {p.name for p in (index / "segments").iterdir()} == listed, "no unlisted or half-written segment"


def test_a_second_writer_is_refused_with_one_line(laws, tmp_path, encoder) -> None:
    index = tmp_path / "idx"
    _build(laws, ["BOE-A-2099-1"], index, encoder)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from legalsearch import store\n"
         "with store.WriterLock(Path(sys.argv[1])):\n    print('HELD', flush=True); time.sleep(60)", str(index)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "HELD"
        result = runner.invoke(app, ["index", str(laws / "BOE-A-2099-2.txt"), "--index", str(index)])
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "another legalsearch is writing this index" in lines[0]
        assert f"pid {holder.pid}" in lines[0] and "Traceback" not in result.output
    finally:
        holder.kill()
        holder.wait()
    assert [law["boe_id"] for law in LegalSearch.open(index, encoder=encoder).laws()] == ["BOE-A-2099-1"]
    assert _build(laws, ["BOE-A-2099-2"], index, encoder).laws == 2, "the lock dies with its holder"


def test_writers_in_threads_never_corrupt_the_index(laws, tmp_path, encoder) -> None:
    index = tmp_path / "idx"
    _build(laws, ["BOE-A-2099-1"], index, encoder)
    outcomes: list[str] = []

    def write(name: str) -> None:
        try:
            _build(laws, [name], index, encoder)
            outcomes.append("done")
        except store.IndexBusy:
            outcomes.append("busy")

    threads = [threading.Thread(target=write, args=(n,)) for n in ("BOE-A-2099-2", "BOE-A-2099-4")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "done" in outcomes
    search = LegalSearch.open(index, encoder=encoder)
    assert search.manifest["counts"]["laws"] == 1 + outcomes.count("done")
    assert search.search(QUERIES[0], k=3)


def test_a_reader_moves_to_the_next_commit_without_a_restart(laws, tmp_path, encoder) -> None:
    index = tmp_path / "idx"
    _build(laws, ["BOE-A-2099-1"], index, encoder)
    search = LegalSearch.open(index, encoder=encoder)
    first = search.commit
    assert not search.search("fianza en metálico", k=3, mode="lexical") or all(
        h.boe_id == "BOE-A-2099-1" for h in search.search("fianza en metálico", k=3, mode="lexical")
    )
    _build(laws, ["BOE-A-2099-4"], index, encoder)
    hits = search.search("fianza en metálico", k=1, mode="lexical")
    assert hits[0].boe_id == "BOE-A-2099-4" and search.commit == first + 1
    with store.WriterLock(index):
        store.compact(index)
    assert search.search("fianza en metálico", k=1, mode="hybrid")[0].boe_id == "BOE-A-2099-4"
    assert search.commit == first + 2 and len(search.manifest["segments"]) == 1
    # a rewrite (new dims) replaces the folder: the reader follows it too
    _build(laws, ["BOE-A-2099-4"], index, encoder, dims=[128, 32])
    assert search.search("fianza en metálico", k=1, dim=32, mode="dense")
    assert search.dims == [128, 32]


def test_health_says_which_commit_is_served_and_follows_updates(laws, tmp_path, encoder) -> None:
    from fastapi.testclient import TestClient

    from legalsearch.server import create_app

    index = tmp_path / "idx"
    _build(laws, ["BOE-A-2099-1"], index, encoder)
    client = TestClient(create_app(LegalSearch.open(index, encoder=encoder)))
    first = client.get("/health").json()
    assert first["commit"] == 1 and first["counts"]["laws"] == 1
    _build(laws, ["BOE-A-2099-4"], index, encoder)
    second = client.get("/health").json()
    assert second["commit"] == 2 and second["counts"]["laws"] == 2, "picked up without a restart"
    found = client.post("/search", json={"query": "fianza en metálico", "k": 1, "mode": "lexical"}).json()
    assert found["hits"][0]["boe_id"] == "BOE-A-2099-4"
