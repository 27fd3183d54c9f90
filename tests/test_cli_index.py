"""`legalsearch index`, `ask`, `info` through typer's CliRunner: output, JSON schema, and every error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch.cli import app

from .conftest import CORPORA, needs_corpora
from .test_index_search import LAW_A, LAW_B

runner = CliRunner()


@pytest.fixture
def built(tmp_path: Path, tiny_model: Path) -> Path:
    laws = tmp_path / "laws"
    laws.mkdir()
    (laws / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    (laws / "BOE-A-2099-2.txt").write_text(LAW_B, encoding="utf-8")
    result = runner.invoke(app, ["index", str(laws), "--model", str(tiny_model), "--dims", "128,32"])
    assert result.exit_code == 0, result.output
    assert "2 laws, 6 units" in result.stdout and "dims 128, 32" in result.stdout
    return Path("indexes/default")  # LEGALSEARCH_INDEX, under the test's own folder


def snapshot(index: Path) -> dict:
    return {p: p.read_bytes() for p in index.rglob("*") if p.is_file()}


def test_index_ask_info(built: Path, tmp_path: Path) -> None:
    assert (tmp_path / "indexes" / "default" / "manifest.json").exists()
    result = runner.invoke(app, ["ask", "vacaciones anuales retribuidas", "--k", "2"])
    assert result.exit_code == 0, result.output
    assert "1." in result.stdout and "https://www.boe.es/buscar/act.php?id=BOE-A-2099-" in result.stdout
    result = runner.invoke(app, ["ask", "vacaciones anuales retribuidas", "--k", "3", "--json", "--dim", "32"])
    hits = json.loads(result.stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    for key in ("rank", "score", "boe_id", "law_title", "article_id", "heading", "path", "url", "text", "citation"):
        assert key in hits[0]
    assert hits[0]["citation"].startswith(("Art. ", "Disposición")) and "(BOE-A-2099-" in hits[0]["citation"]
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert (
        "tiny-xlmr" in result.stdout and "2 laws, 6 units" in result.stdout and "128 (Flat), 32 (Flat)" in result.stdout
    )
    result = runner.invoke(app, ["info", "--verify", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["dims"] == [128, 32]


def test_reindex_unchanged_embeds_nothing(built: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["index", str(tmp_path / "laws")])
    assert result.exit_code == 0
    assert "up to date, nothing to embed, 6 reused" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "hola", "--index", "nowhere"], "error: nowhere: no index here; build one with `legalsearch index"),
        (["ask", "hola", "--dim", "64"], "error: dim 64 was not built for this index; built: 128, 32"),
        (["ask", "   "], "error: empty query"),
        (["ask", "hola", "--k", "0"], "error: k must be between 1 and 1000 (got 0)"),
        (["ask", "hola", "--model", "other/model"], "cannot be queried with other/model"),
        (["index", "laws", "--model", "other/model"], "was built with model"),
        (["index", "laws", "--dims", "64,abc"], "error: --dims '64,abc': give numbers separated by commas"),
        (["index", "laws", "--dims", "4096"], "dims [4096] do not fit a 128-dimensional model"),
        (["index", "laws", "--faiss", "ivf"], "unknown FAISS index kind 'ivf'; choose one of flat, hnsw"),
        (["info", "--index", "nowhere"], "error: nowhere: no index here"),
    ],
)
def test_errors_are_one_line_exit_non_zero_and_write_nothing(built: Path, args: list[str], message: str) -> None:
    before = snapshot(built)
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert snapshot(built) == before


def test_model_that_cannot_load_says_what_was_tried(tmp_path: Path) -> None:
    laws = tmp_path / "laws"
    laws.mkdir()
    (laws / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    result = runner.invoke(app, ["index", str(laws), "--model", "dariolopez/bge-m3-es-legal-tmp-3"])
    assert result.exit_code == 1
    assert "cannot load model from Hugging Face hub id 'dariolopez/bge-m3-es-legal-tmp-3'" in result.stderr
    assert "--model DIR" in result.stderr
    result = runner.invoke(app, ["index", str(laws), "--model", str(tmp_path / "no" / "such-model")])
    assert result.exit_code == 1 and f"no model folder at {tmp_path / 'no' / 'such-model'}" in result.stderr
    empty = tmp_path / "empty-model"
    empty.mkdir()
    result = runner.invoke(app, ["index", str(laws), "--model", str(empty)])
    assert result.exit_code == 1 and "holds no sentence-transformers model" in result.stderr
    assert not Path("indexes/default").exists()


@needs_corpora
@pytest.mark.slow
@pytest.mark.long
def test_end_to_end_real_model_on_real_laws(minilm: Path) -> None:
    """all-MiniLM-L6-v2 over the Constitución and the Estatuto de los Trabajadores, through the CLI."""
    sources = [str(CORPORA / "html" / "BOE-A-1978-31229.html"), str(CORPORA / "xml" / "BOE-A-2015-11430.xml")]
    result = runner.invoke(app, ["index", *sources, "--model", str(minilm)])
    assert result.exit_code == 0, result.output
    expected = {
        "¿Cómo es la bandera de España?": ("BOE-A-1978-31229", "a4"),
        "¿Cuál es la capital del Estado?": ("BOE-A-1978-31229", "a5"),
        "derecho a la vida y pena de muerte": ("BOE-A-1978-31229", "a15"),
        "duración del período de prueba del contrato de trabajo": ("BOE-A-2015-11430", "a14"),
        "salario mínimo interprofesional": ("BOE-A-2015-11430", "a27"),
    }
    for question, (boe_id, article_id) in expected.items():
        result = runner.invoke(app, ["ask", question, "--json", "--k", "3", "--mode", "dense"])
        top = json.loads(result.stdout)[0]
        assert (top["boe_id"], top["article_id"]) == (boe_id, article_id), question
    assert json.loads(runner.invoke(app, ["ask", "bandera", "--json", "--dim", "64"]).stdout)


def test_index_of_unreachable_ids_names_each_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("legalsearch.sources.fetch.time.sleep", lambda seconds: None)
    ids = tmp_path / "ids.txt"
    ids.write_text("BOE-A-1978-31229\nBOE-A-1889-4763\n", encoding="utf-8")
    result = runner.invoke(app, ["index", str(ids)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: BOE-A-1978-31229: cannot reach the BOE API")
    assert lines[1].startswith("error: BOE-A-1889-4763: not tried, the BOE API was unreachable just before")
    assert lines[2] == "error: nothing to index: no source could be read" and len(lines) == 3
