"""Property-based fuzzing (hypothesis): every source parser, fed random bytes, truncations and mutations of the
real BOE files, returns a law or raises `ParseError`, never anything else; the HTTP API, driven from its own
OpenAPI schema (schemathesis), never answers 5xx.

The default run is bounded (a few dozen examples each). A longer session:
`LEGALSEARCH_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py -p no:randomly` (README, "Fuzzing").
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legalsearch.documents import Law
from legalsearch.errors import ParseError
from legalsearch.sources import parse_bytes

from .conftest import CORPORA, needs_corpora

EXAMPLES = int(os.environ.get("LEGALSEARCH_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize="LEGALSEARCH_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)  # fmt: skip
# Small real files of every format (large PDFs take seconds per parse: their truncations add nothing new)
SEEDS = (
    "xml/BOE-A-1835-2348.xml",  # API consolidated XML
    "xml/BOE-A-1992-28740.bloque-a90.xml",  # API /texto/bloque answer
    "xml/BOE-A-1989-22056.xml",  # diario XML
    "html/BOE-A-2011-208.html",  # BOE HTML
    "html-derived/BOE-A-1995-24292.html",
    "md/BOE-A-2022-11589.md",  # Markdown
    "pdf/BOE-A-1997-25336.pdf",  # consolidated PDF
)
# Starts that steer random bytes into each format's reader
PREFIXES = (b"", b"<?xml version='1.0'?><response><data>", b"<documento><texto>", b"%PDF-1.4\n", b"<html><body>",
            b"# Ley 1/2099\n\nArt\xc3\xadculo 1. ", b"\xef\xbb\xbfArt\xc3\xadculo 1.\n")  # fmt: skip


def parses_or_refuses(data: bytes, origin: str) -> None:
    try:
        law = parse_bytes(data, origin)
    except ParseError:
        return
    assert isinstance(law, Law) and law.boe_id and isinstance(law.articles, list)


@FUZZ
@given(prefix=st.sampled_from(PREFIXES), noise=st.binary(max_size=2048))
def test_random_bytes_parse_or_raise_parse_error(prefix: bytes, noise: bytes) -> None:
    parses_or_refuses(prefix + noise, "fuzz.bin")


@pytest.mark.parametrize(
    "data",
    [
        b"<?xml version='1.0' encoding='ttf-8'?><response><data><texto/></data></response>",  # found by fuzzing
        b"<?xml version='1.0' encoding='utf-8'?><documento><texto>\x00</texto></documento>",
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF",
    ],
)
def test_inputs_fuzzing_found_are_parse_errors(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_bytes(data, "found.xml")


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(SEEDS))
    data = bytearray((CORPORA / name).read_bytes())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        how = draw(st.sampled_from(("truncate", "flip", "insert", "delete", "duplicate")))
        if how == "truncate":
            del data[at:]
        elif how == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 4096))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 2048))]
    return name, bytes(data)


@needs_corpora
@FUZZ
@given(case=mutated())
def test_truncated_and_mutated_real_files_parse_or_raise_parse_error(case: tuple[str, bytes]) -> None:
    name, data = case
    parses_or_refuses(data, Path(name).name)


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("fastapi")
    from legalsearch import indexing
    from legalsearch.search import LegalSearch
    from legalsearch.server import create_app

    from .conftest import build_tiny_model
    from .test_index_search import LAW_A, LAW_B

    root = tmp_path_factory.mktemp("fuzz-api")
    laws = root / "laws"
    laws.mkdir()
    (laws / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    (laws / "BOE-A-2099-2.txt").write_text(LAW_B, encoding="utf-8")
    model = build_tiny_model(root / "model")
    indexing.build([str(laws)], root / "idx", model=str(model), dims=[128, 64], backend="torch", precision="fp32")
    return create_app(LegalSearch.open(root / "idx"))


def test_http_api_never_answers_5xx(api_app) -> None:
    schemathesis = pytest.importorskip("schemathesis")

    schema = schemathesis.openapi.from_asgi("/openapi.json", api_app)
    operations = [operation.ok() for operation in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/search", "/search/batch", "/laws", "/laws/{boe_id}", "/health"}
    for op in operations:  # valid requests, then (where there is input to break) requests that break the schema
        takes_input = op.method.upper() == "POST" or "{" in op.path or len(op.query) > 0
        modes = [schemathesis.GenerationMode.POSITIVE] + [schemathesis.GenerationMode.NEGATIVE] * takes_input
        for mode in modes:

            @FUZZ
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case) -> None:
                response = case.call()
                assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
                assert "detail" in response.json() if response.status_code >= 400 else True

            check()
