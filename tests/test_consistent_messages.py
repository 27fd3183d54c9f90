"""Help and messages that agree with each other and with what legalsearch does (issue 25, items 6 and 7)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch.cli import app
from legalsearch.embedding import CPU_DEFAULT, load_encoder
from legalsearch.sources.fetch import DEFAULT_API

from .conftest import CORPORA, REPO

runner = CliRunner()
NO_EXPORTS = shutil.ignore_patterns("openvino", "onnx")  # a copy of a model without what other tests exported


def words(text: str) -> str:
    return " ".join(text.split())


def test_index_help_names_the_runtime_a_new_index_gets() -> None:
    result = runner.invoke(app, ["index", "--help"])
    shown = words(result.output)
    assert f"for a new index {CPU_DEFAULT[0]} {CPU_DEFAULT[1]} on a CPU" in shown
    assert "for a new index torch (CUDA" not in shown
    assert f"for a new index {CPU_DEFAULT[1]} with {CPU_DEFAULT[0]}" in shown  # --precision says the same


def test_the_boe_api_default_is_the_same_in_help_readme_and_code() -> None:
    shown = words(runner.invoke(app, ["--help"]).output)
    assert f"LEGALSEARCH_BOE_API (the BOE open-data API's root; default {DEFAULT_API})" in shown
    readme = words(README_TEXT)
    assert f"default `{DEFAULT_API}`" in readme
    assert f"default {DEFAULT_API}/legislacion-consolidada" not in shown


README_TEXT = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_export_line_names_the_runtime_that_embeds(tiny_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model, ignore=NO_EXPORTS)  # a folder of its own: the export is written beside it
    said: list[str] = []
    encoder = load_encoder(str(model), "cpu", said.append, backend="openvino", precision="bf16")
    assert encoder.info.runtime == "openvino bf16"  # what the "embedding … with" line names
    [line] = [s for s in said if s.startswith("exporting")]
    assert line.startswith("exporting the model for openvino bf16 once (an fp32 OpenVINO model, run in bf16)")
    said.clear()
    load_encoder(str(model), "cpu", said.append, backend="openvino", precision="bf16")
    assert not said, "an export is made once"


def test_an_unreachable_hub_is_one_whole_line(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    law = tmp_path / "BOE-A-2099-1.txt"
    law.write_text("Ley 1/2099, de prueba.\n\nArtículo 1. Objeto.\n\nEsta ley regula la prueba.\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "legalsearch", "index", str(law), "--index", str(tmp_path / "idx"),
         "--model", "someone/some-model"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert "cannot load model from Hugging Face hub id 'someone/some-model'" in line
    reason = re.search(r"\[(.*?)\]", line)[1]
    assert reason == "ConnectionError: Connection refused (127.0.0.1)", line
    assert line.endswith("(or set LEGALSEARCH_MODEL=DIR)")


def test_index_and_info_report_the_same_size(tiny_model: Path, laws_dir: Path, tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    built = runner.invoke(app, ["index", str(laws_dir), "--index", str(idx), "--model", str(tiny_model)])
    assert built.exit_code == 0, built.output
    summary = re.search(r"; ([\d.]+ [KMG]?i?B)\s*$", built.stdout.strip().splitlines()[-1])[1]
    info = runner.invoke(app, ["info", "--index", str(idx)])
    storage = re.search(r"storage\s+([\d.]+ [KMG]?i?B):", info.stdout)[1]
    assert summary == storage


@pytest.fixture(scope="module")
def mixed_index(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The Constitution with every wording (--history); the ET from its PDF and art. 90 of the IVA law from the
    API XML, both without earlier wordings."""
    idx = tmp_path_factory.mktemp("mixed") / "idx"
    common = ["--index", str(idx), "--model", str(tiny_model), "--dims", "64"]
    ce = runner.invoke(app, ["index", str(CORPORA / "xml" / "BOE-A-1978-31229.texto.xml"), "--history", *common])
    assert ce.exit_code == 0, ce.output
    others = [str(CORPORA / "pdf" / "BOE-A-2015-11430.pdf"), str(CORPORA / "xml" / "BOE-A-1992-28740.bloque-a90.xml")]
    assert runner.invoke(app, ["index", *others, *common]).exit_code == 0
    return idx


def test_a_diff_of_a_law_without_earlier_wordings_says_so(mixed_index: Path) -> None:
    result = runner.invoke(
        app,
        ["diff", "BOE-A-2015-11430", "a56", "--from", "2005-01-01", "--to", "2020-01-01", "--index", str(mixed_index)],
    )
    assert result.exit_code != 0
    [line] = result.stderr.strip().splitlines()
    assert "the index holds no earlier wordings of BOE-A-2015-11430" in line and "--history" in line
    assert "None" not in result.output and "Sin cambios" not in result.output
    dated = runner.invoke(
        app,
        ["diff", "BOE-A-1992-28740", "a90", "--from", "2005-01-01", "--to", "2020-01-01", "--index", str(mixed_index)],
    )
    assert dated.exit_code != 0
    assert "no earlier wordings of BOE-A-1992-28740; the wording it holds of a90 is in force from 2012-" in dated.stderr
    ce = runner.invoke(
        app, ["diff", "BOE-A-1978-31229", "a135", "--from", "2005-01-01", "--to", "2020-01-01", "--index",
              str(mixed_index), "--json"],
    )  # fmt: skip
    assert ce.exit_code == 0 and json.loads(ce.stdout)["changed"]


def test_the_web_page_says_the_same_of_a_diff(mixed_index: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from legalsearch.search import LegalSearch
    from legalsearch.server import create_app

    client = TestClient(create_app(LegalSearch.open(mixed_index)))
    page = client.get("/ley/BOE-A-2015-11430/a56", params={"desde": "2005-01-01", "hasta": "2020-01-01"})
    assert page.status_code == 400
    # the ET of 2015 was not in force in 2005: either true line, never "None"
    said = ("no guarda redacciones anteriores de esta ley", "no estaba en vigor el 1 de enero de 2005")
    assert any(s in page.text for s in said) and "None" not in page.text
