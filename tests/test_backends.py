"""Backends and precisions (torch, onnx, openvino; fp32, fp16, bf16, int8) with the tiny test model: selection,
exports cached beside the model and never redone, the manifest's record, and the refusal of encoders whose vectors
an index cannot mix with its own."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from legalsearch import embedding, indexing
from legalsearch.cli import app
from legalsearch.embedding import CPU_DEFAULT, GPU_DEFAULT, load_encoder, resolve_runtime
from legalsearch.errors import ModelError
from legalsearch.search import LegalSearch

runner = CliRunner()
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="pip install 'legalsearch[onnx]'"
)
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="pip install 'legalsearch[openvino]'"
)
TEXTS = ["El trabajador tendrá derecho a vacaciones anuales.", "Fianza en metálico.", "Los españoles son iguales."]


@pytest.fixture
def model(tmp_path: Path, tiny_model: Path) -> Path:
    """A writable copy of the tiny model, so each test sees its own exports."""
    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


@pytest.fixture
def laws(laws_dir: Path) -> Path:
    return laws_dir


def test_runtime_defaults_and_invalid_combinations() -> None:
    assert resolve_runtime(None, None, "cpu") == CPU_DEFAULT == ("openvino", "bf16")
    assert resolve_runtime(None, None, "cuda") == GPU_DEFAULT == ("torch", "fp16")
    assert resolve_runtime(None, "int8", "cpu") == ("openvino", "int8")
    assert resolve_runtime(None, "fp16", "cuda:1") == ("torch", "fp16")
    assert resolve_runtime("onnx", None, "cpu") == ("onnx", "fp32"), "the backend's own precision when bf16 is not"
    assert resolve_runtime("torch", None, "cpu") == ("torch", "fp32")
    assert resolve_runtime("torch", "bf16", "cpu") == ("torch", "bf16")
    with pytest.raises(ModelError, match=r"unknown backend 'tensorrt'; choose one of torch, onnx, openvino"):
        resolve_runtime("tensorrt", None, "cpu")
    with pytest.raises(ModelError, match=r"backend torch does not run int8; .*onnx \(fp32/int8\)"):
        resolve_runtime("torch", "int8", "cpu")
    with pytest.raises(ModelError, match=r"unknown precision 'int4'"):
        resolve_runtime("onnx", "int4", "cpu")
    with pytest.raises(ModelError, match="fp16 needs a CUDA device"):
        resolve_runtime("torch", "fp16", "cpu")
    with pytest.raises(ModelError, match="openvino runs on the CPU here"):
        resolve_runtime("openvino", None, "cuda")


def test_bf16_vectors_are_unit_length_and_close_to_fp32(model: Path) -> None:
    fp32 = load_encoder(str(model), "cpu", backend="torch", precision="fp32").encode(TEXTS)
    bf16 = load_encoder(str(model), "cpu", backend="torch", precision="bf16")
    assert bf16.info.runtime == "torch bf16"
    vectors = bf16.encode(TEXTS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * fp32).sum(1).min() > 0.98


@needs_onnx
def test_onnx_export_is_cached_beside_the_model_and_never_redone(model: Path) -> None:
    before = embedding._local_revision(model)
    notes: list[str] = []
    reference = load_encoder(str(model), "cpu", backend="torch", precision="fp32").encode(TEXTS)
    encoder = load_encoder(str(model), "cpu", notes.append, backend="onnx", precision="fp32")
    exported = model / "onnx" / "model.onnx"
    assert encoder.info.variant == "onnx/model.onnx" and exported.exists()
    assert len(notes) == 1 and "exporting the model for onnx fp32 once;" in notes[0]
    assert np.allclose(encoder.encode(TEXTS), reference, atol=1e-4)
    stamp = exported.stat().st_mtime_ns
    again = load_encoder(str(model), "cpu", notes.append, backend="onnx", precision="fp32")
    assert len(notes) == 1, "a cached export is loaded, not redone"
    assert exported.stat().st_mtime_ns == stamp
    assert np.allclose(again.encode(TEXTS), reference, atol=1e-4)
    assert embedding._local_revision(model) == before, "exports beside a model do not change its fingerprint"
    assert not [p for p in model.iterdir() if p.name.startswith(".export-")], "no scratch folder is left behind"


@needs_onnx
def test_onnx_int8_quantizes_once_and_stays_close(model: Path) -> None:
    reference = load_encoder(str(model), "cpu", backend="torch", precision="fp32").encode(TEXTS)
    notes: list[str] = []
    encoder = load_encoder(str(model), "cpu", notes.append, backend="onnx", precision="int8")
    assert encoder.info.variant.startswith("onnx/model_qint8_") and (model / encoder.info.variant).exists()
    assert [n.split(";")[0] for n in notes] == [
        "exporting the model for onnx int8 once (first in fp32, then quantised)",
        "exporting the model for onnx int8 once",
    ]
    assert (encoder.encode(TEXTS) * reference).sum(1).min() > 0.95
    load_encoder(str(model), "cpu", notes.append, backend="onnx", precision="int8")
    assert len(notes) == 2


@needs_openvino
def test_openvino_fp32_and_int8(model: Path) -> None:
    reference = load_encoder(str(model), "cpu", backend="torch", precision="fp32").encode(TEXTS)
    fp32 = load_encoder(str(model), "cpu", backend="openvino", precision="fp32")
    assert (model / "openvino" / "openvino_model.xml").exists()
    assert np.allclose(fp32.encode(TEXTS), reference, atol=1e-4)
    int8 = load_encoder(str(model), "cpu", backend="openvino", precision="int8")
    assert int8.info.variant == "openvino/openvino_model_qint8.xml"
    assert (model / "openvino" / "openvino_model_qint8.bin").exists()
    assert (int8.encode(TEXTS) * reference).sum(1).min() > 0.95


@needs_onnx
def test_models_in_packages_or_read_only_folders_export_into_the_models_home(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "models-home"
    monkeypatch.setenv("LEGALSEARCH_MODELS", str(home))
    packaged = Path(shutil.copytree(tiny_model, tmp_path / "venv" / "site-packages" / "some_model"))
    encoder = load_encoder(str(packaged), "cpu", backend="onnx", precision="fp32")
    assert not (packaged / "onnx").exists(), "nothing is written into an installed package"
    assert [p.relative_to(home).parts[-2:] for p in home.rglob("model.onnx")] == [("onnx", "model.onnx")]
    assert encoder.info.model_id == str(packaged.resolve())
    assert encoder.info.revision == embedding._local_revision(packaged)
    if os.geteuid() != 0:  # root writes into read-only folders
        model = Path(shutil.copytree(tiny_model, tmp_path / "read-only"))
        model.chmod(0o555)
        try:
            load_encoder(str(model), "cpu", backend="onnx", precision="fp32")
            assert not (model / "onnx").exists() and len(list(home.rglob("model.onnx"))) == 2
        finally:
            model.chmod(0o755)


def test_a_missing_backend_says_how_to_install_it(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ModelError, match=r"backend openvino needs openvino .*pip install 'legalsearch\[openvino\]'"):
        load_encoder(str(model), "cpu", backend="openvino")


@needs_onnx
def test_index_records_its_runtime_and_refuses_int8_mixed_with_float(model: Path, laws: Path, tmp_path: Path) -> None:
    index = tmp_path / "int8-index"
    indexing.build([str(laws)], index, model=str(model), dims=[128, 32], backend="onnx", precision="int8")
    recorded = json.loads((index / "manifest.json").read_text())["model"]
    assert (recorded["backend"], recorded["precision"]) == ("onnx", "int8")
    assert recorded["variant"].startswith("onnx/model_qint8_")

    search = LegalSearch.open(index)  # queries run the index's own runtime by default
    hits = search.search("vacaciones anuales retribuidas", k=2, mode="dense")
    assert search.encoder.info.runtime == "onnx int8" and hits
    with pytest.raises(ModelError, match=r"embedded with onnx int8; .* use --backend onnx --precision int8"):
        LegalSearch.open(index, backend="torch", precision="fp32").search("vacaciones", k=1, mode="dense")
    with pytest.raises(ModelError, match=r"embedded with onnx int8"):  # nor may an update mix them
        indexing.build([str(laws)], index, replace=True, dims=[64], backend="torch", precision="fp32")
    assert json.loads((index / "manifest.json").read_text())["dims"] == [128, 32], "the refused update wrote nothing"

    result = runner.invoke(
        app, ["ask", "vacaciones", "--index", str(index), "--backend", "torch", "--precision", "fp32"]
    )
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "use --backend onnx --precision int8" in result.stderr


@needs_onnx
def test_float_runtimes_share_an_index(model: Path, laws: Path, tmp_path: Path) -> None:
    index = tmp_path / "fp32-index"
    result = runner.invoke(app, ["index", str(laws), "--index", str(index), "--model", str(model), "--dims", "128"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((index / "manifest.json").read_text())["model"]
    assert (recorded["backend"], recorded["precision"]) == CPU_DEFAULT, "a new index on a CPU runs the CPU default"
    own = LegalSearch.open(index)
    own_hits = own.search("fianza en metálico", k=3, mode="dense")
    assert own.encoder.info.runtime == "openvino bf16"
    for backend in ("torch", "onnx"):  # fp32 vectors query a bf16 index: the same weights, rounded
        other = LegalSearch.open(index, backend=backend, precision="fp32")
        hits = other.search("fianza en metálico", k=3, mode="dense")
        assert other.encoder.info.runtime == f"{backend} fp32"
        assert [h.score for h in hits] == pytest.approx([h.score for h in own_hits], abs=2e-2)
        # the same articles, up to the order of those whose scores bf16 rounding can swap
        apart = [all(abs(h.score - o.score) > 2e-2 for o in own_hits if o is not h) for h in own_hits]
        clear = [i for i, alone in enumerate(apart) if alone]
        assert [(hits[i].boe_id, hits[i].article_id) for i in clear] == [
            (own_hits[i].boe_id, own_hits[i].article_id) for i in clear
        ]
    result = runner.invoke(app, ["info", "--index", str(index)])
    assert "embedded with openvino bf16 (openvino/openvino_model.xml)" in result.stdout
