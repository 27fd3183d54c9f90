"""`ask` answers without loading sentence-transformers: the lean OpenVINO query encoder gives the vectors the
index's own runtime gives, and OpenVINO's compiled model is cached for the next call (issue 25, item 5)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from legalsearch.cli import app
from legalsearch.embedding import Encoder, load_encoder
from legalsearch.query_encoder import QueryEncoder, lean_encoder, load_query_encoder, ov_cache_dir

from .conftest import CORPORA

runner = CliRunner()
NO_EXPORTS = shutil.ignore_patterns("openvino", "onnx")  # a copy of a model without what other tests exported
TEXTS = [
    "derecho de asilo",
    "¿Cuántos días de vacaciones tiene un trabajador?",
    "El arrendatario podrá subarrendar la vivienda con el consentimiento escrito del arrendador. " * 40,  # cut
]


def agree(model: str) -> None:
    lean = lean_encoder(model, "openvino", "bf16")
    assert isinstance(lean, QueryEncoder)
    full = load_encoder(model, "cpu", backend="openvino", precision="bf16")
    assert lean.info == full.info
    assert lean.count_tokens(TEXTS) == full.count_tokens(TEXTS)
    cosines = (lean.encode(TEXTS) * full.encode(TEXTS)).sum(1)
    assert cosines.min() > 0.9999, cosines


@pytest.mark.long
def test_the_lean_encoder_gives_the_vectors_of_the_full_one(tiny_model: Path, minilm: Path, tmp_path: Path) -> None:
    own = tmp_path / "tiny"
    shutil.copytree(tiny_model, own, ignore=NO_EXPORTS)  # CLS pooling, XLM-R tokenizer, 512 tokens
    load_encoder(str(own), "cpu", backend="openvino", precision="bf16")  # the export an index build makes
    agree(str(own))
    load_encoder(str(minilm), "cpu", backend="openvino", precision="bf16")  # mean pooling, WordPiece, 256 tokens
    agree(str(minilm))


def test_it_applies_only_where_it_reproduces_the_model(tiny_model: Path, tmp_path: Path) -> None:
    own = tmp_path / "tiny"
    shutil.copytree(tiny_model, own, ignore=NO_EXPORTS)
    assert lean_encoder(str(own), "openvino", "bf16") is None, "no export yet: sentence-transformers makes it"
    assert lean_encoder(str(own), "torch", "fp32") is None and lean_encoder(str(own), "openvino", "int8") is None
    load_encoder(str(own), "cpu", backend="openvino", precision="bf16")
    prompted = tmp_path / "prompted"
    shutil.copytree(own, prompted)
    (prompted / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: "}, "default_prompt_name": "query"}), encoding="utf-8"
    )
    assert lean_encoder(str(prompted), "openvino", "bf16") is None, "a default prompt is sentence-transformers' job"
    record = {"id": str(own), "backend": "torch", "precision": "fp32"}
    assert isinstance(load_query_encoder(str(own), "cpu", match=record), Encoder)


def test_ask_loads_neither_torch_nor_sentence_transformers_and_caches_the_compiled_model(
    tiny_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model, ignore=NO_EXPORTS)
    idx = tmp_path / "idx"
    source = str(CORPORA / "xml" / "BOE-A-1989-22056.xml")
    built = runner.invoke(app, ["index", source, "--index", str(idx), "--model", str(model), "--dims", "64"])
    assert built.exit_code == 0, built.output
    shutil.rmtree(ov_cache_dir(model), ignore_errors=True)
    script = (
        "import sys; from legalsearch import LegalSearch; "
        f"hits = LegalSearch.open({str(idx)!r}).search('especies de caza', k=3, mode='dense'); "
        "print(len(hits), sorted({'torch', 'transformers', 'sentence_transformers', 'optimum'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "[]"]
    assert any(ov_cache_dir(model).iterdir()), "OpenVINO's compiled model is kept for the next call"


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_ask_answers_the_same_with_either_encoder(tiny_model: Path, tmp_path: Path, mode: str) -> None:
    from legalsearch import LegalSearch

    idx = tmp_path / "idx"
    source = str(CORPORA / "xml" / "BOE-A-1989-22056.xml")
    assert runner.invoke(app, ["index", source, "--index", str(idx), "--model", str(tiny_model)]).exit_code == 0
    lean = LegalSearch.open(idx)
    assert isinstance(lean.encoder, QueryEncoder)
    full = LegalSearch.open(idx)
    full._encoder = load_encoder(str(tiny_model), "cpu", backend="openvino", precision="bf16")
    question = "¿Necesito permiso para soltar ejemplares de especies de caza?"
    ours, theirs = (s.search(question, k=5, mode=mode) for s in (lean, full))
    assert [h.article_id for h in ours] == [h.article_id for h in theirs]
    assert np.allclose([h.score for h in ours], [h.score for h in theirs], atol=1e-4)
