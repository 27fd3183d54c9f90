"""`--distributed ray`: the same index as the single-process path, incremental, resumable, with the tiny model
and a local Ray instance."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from legalsearch import distributed, indexing
from legalsearch.cli import app
from legalsearch.errors import LegalSearchError
from legalsearch.search import LegalSearch
from legalsearch.testing import segment_folder

from .test_index_search import LAW_B, long_article_law

pytestmark = pytest.mark.long  # a local Ray cluster each: CI runs them after the default run

runner = CliRunner()
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="pip install 'legalsearch[ray]'")


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module (starting one takes seconds)."""
    ray = pytest.importorskip("ray", reason="pip install 'legalsearch[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@pytest.fixture
def laws(laws_dir: Path) -> Path:
    (laws_dir / "BOE-A-2099-3.txt").write_text(long_article_law(30), encoding="utf-8")
    return laws_dir


def rows(index: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(index / "legalsearch.sqlite") as db:
        return db.execute("SELECT chunk_id, content_hash FROM chunks ORDER BY row").fetchall()


def vectors(index: Path) -> np.ndarray:
    """The index's vectors, re-normalised after their fp16 storage (so that row dot products are cosines)."""
    stored = np.load(segment_folder(index) / "vectors.f16.npy").astype(np.float32)
    return stored / np.linalg.norm(stored, axis=1, keepdims=True)


FP32 = {"backend": "torch", "precision": "fp32"}  # bf16 (the CPU default) rounds differently per batch make-up


@needs_ray
def test_ray_build_equals_the_local_build(ray_local, laws: Path, tmp_path: Path, tiny_model: Path) -> None:
    local, spread = tmp_path / "local", tmp_path / "ray"
    indexing.build([str(laws)], local, model=str(tiny_model), dims=[128, 32], max_tokens=96, **FP32)
    report = indexing.build(
        [str(laws)], spread, model=str(tiny_model), dims=[128, 32], max_tokens=96, distributed="ray", workers=2,
        **FP32,
    )  # fmt: skip
    assert report.embedded == len(rows(local)) > 6, "the long article is split into several chunks"
    assert rows(spread) == rows(local), "identical chunk ids, texts and order"
    cosines = (vectors(spread) * vectors(local)).sum(1)
    assert cosines.min() >= 0.9999
    manifest = json.loads((spread / "manifest.json").read_text())
    assert (manifest["model"]["backend"], manifest["model"]["precision"]) == ("torch", "fp32"), "the actors' runtime"
    assert not list(tmp_path.glob(".ray.shards*")), "shards are deleted once the index is in place"
    hits = LegalSearch.open(spread).search("vacaciones anuales retribuidas", k=3, mode="dense")
    assert [h.article_id for h in hits] == [
        h.article_id for h in LegalSearch.open(local).search("vacaciones anuales retribuidas", k=3, mode="dense")
    ]


@needs_ray
def test_ray_incremental_sends_only_new_chunks(ray_local, laws: Path, tmp_path: Path, tiny_model: Path, monkeypatch):
    index = tmp_path / "ray"
    (laws / "BOE-A-2099-3.txt").unlink()
    indexing.build([str(laws)], index, model=str(tiny_model), dims=[64], distributed="ray")
    sent: list[int] = []
    real = distributed.RayEncoder._run
    monkeypatch.setattr(
        distributed.RayEncoder, "_run", lambda self, todo, *a: (sent.append(len(todo)), real(self, todo, *a))[1]
    )
    (laws / "BOE-A-2099-2.txt").write_text(LAW_B.replace("por las partes", "por las partes contratantes"))
    report = indexing.build([str(laws)], index, distributed="ray")
    assert sent == [1] and report.embedded == 1 and report.reused == 5


@needs_ray
def test_an_interrupted_run_resumes_from_its_shards(
    ray_local, laws: Path, tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "ray"
    monkeypatch.setattr(distributed, "SHARD_ROWS", 4)
    real = distributed.RayEncoder._write_shard
    written: list[int] = []

    def dies_after_two_shards(self, hashes, vectors):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(len(hashes))
        real(self, hashes, vectors)

    monkeypatch.setattr(distributed.RayEncoder, "_write_shard", dies_after_two_shards)
    with pytest.raises(KeyboardInterrupt):
        indexing.build([str(laws)], index, model=str(tiny_model), dims=[64], max_tokens=96, distributed="ray", **FP32)
    assert not index.exists(), "no index until the run completes"
    shards = list(tmp_path.glob(".ray.shards/*/shard-*.parquet"))
    assert len(shards) == 2 and not list(tmp_path.glob(".ray.shards/*/.shard-*"))

    monkeypatch.setattr(distributed.RayEncoder, "_write_shard", real)
    sent: list[int] = []
    run = distributed.RayEncoder._run
    monkeypatch.setattr(
        distributed.RayEncoder, "_run", lambda self, todo, *a: (sent.append(len(todo)), run(self, todo, *a))[1]
    )
    notes: list[str] = []
    report = indexing.build(
        [str(laws)], index, model=str(tiny_model), dims=[64], max_tokens=96, distributed="ray", notify=notes.append,
        **FP32,
    )  # fmt: skip
    unique = len({digest for _, digest in rows(index)})  # chunks with the same text are embedded once
    assert report.embedded == len(rows(index)) > unique
    assert sent == [unique - 8], "the 8 vectors of the two shards were not embedded again"
    assert any(n.startswith("resuming: 8 vectors already in") for n in notes)
    local = tmp_path / "local"
    indexing.build([str(laws)], local, model=str(tiny_model), dims=[64], max_tokens=96, **FP32)
    assert rows(index) == rows(local) and (vectors(index) * vectors(local)).sum(1).min() >= 0.9999


def test_without_ray_the_cli_says_how_to_install_it(laws: Path, tiny_model: Path, monkeypatch) -> None:
    real = importlib.util.find_spec

    def no_ray(name, *args):
        if name == "ray" or name.startswith("ray."):
            return None
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_ray)
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    result = runner.invoke(app, ["index", str(laws), "--model", str(tiny_model), "--distributed", "ray"])
    assert result.exit_code == 1
    assert "pip install 'legalsearch[ray]'" in result.stderr and not Path("indexes/default").exists()


def test_unknown_engine_is_refused(laws: Path, tiny_model: Path) -> None:
    with pytest.raises(LegalSearchError, match="unknown --distributed 'dask'; the one engine supported is ray"):
        indexing.build([str(laws)], Path("idx"), model=str(tiny_model), distributed="dask")
