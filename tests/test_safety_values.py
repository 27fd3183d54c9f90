"""Out-of-range values read from an index file — BM25 rows, offsets, frequencies and lengths, the catalogue's
chunk rows and segment ranges — are a damaged index: one line in `ask` and `info`, 503 from `/search` and the
web page, never a traceback, a 500 or a silently wrong score."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from legalsearch import indexing
from legalsearch.cli import app
from legalsearch.search import LegalSearch
from legalsearch.server import create_app
from legalsearch.testing import segment_folder

from .test_index_search import LAW_A, LAW_B
from .test_safety import one_error_line

runner = CliRunner()


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, tiny_model) -> Path:
    folder = tmp_path_factory.mktemp("values")
    laws = folder / "laws"
    laws.mkdir()
    (laws / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    (laws / "BOE-A-2099-2.txt").write_text(LAW_B, encoding="utf-8")
    indexing.build([str(laws)], folder / "idx", model=str(tiny_model), dims=[32])
    return folder / "idx"


def _payload(index: Path, name: str, values) -> None:
    """Overwrite the whole payload of a BM25 array (its header kept) with `values`, same dtype and size."""
    path = segment_folder(index) / "bm25" / name
    array = np.load(path)
    start = path.stat().st_size - array.nbytes
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(np.full(array.shape, values, dtype=array.dtype).tobytes())


def _sql(index: Path, statement: str) -> None:
    connection = sqlite3.connect(index / "legalsearch.sqlite")
    with connection:
        connection.execute(statement)
    connection.close()


AT_QUERY = {
    "bm25-docs-past-the-end": lambda i: _payload(i, "docs.npy", 2**31 - 1),
    "bm25-docs-negative": lambda i: _payload(i, "docs.npy", -3),
    "bm25-tfs-nan": lambda i: _payload(i, "tfs.npy", np.nan),
    "chunk-row-past-the-end": lambda i: _sql(i, "UPDATE chunks SET row = 100000 WHERE row = 0"),
    "chunk-row-negative": lambda i: _sql(i, "UPDATE chunks SET row = -5 WHERE row = 0"),
}
AT_OPEN = {
    "bm25-offsets-backwards": lambda i: _payload(i, "indptr.npy", 0) or _indptr_end(i),
    "bm25-length-negative": lambda i: _payload(i, "lengths.npy", -1),
    "segment-base-negative": lambda i: _sql(i, "UPDATE segments SET base_row = -10"),
}


def _indptr_end(index: Path) -> None:
    """Offsets that go back from the number of postings to 0 (the last one still says how many there are)."""
    path = segment_folder(index) / "bm25" / "indptr.npy"
    array = np.load(path)
    docs = np.load(segment_folder(index) / "bm25" / "docs.npy")
    array[:] = 0
    array[1] = array[-1] = len(docs)  # [0, n, 0, …, 0, n]
    np.save(path, array)


def _damaged(healthy: Path, tmp_path: Path, damage) -> Path:
    index = tmp_path / "idx"
    shutil.copytree(healthy, index)
    damage(index)
    return index


@pytest.mark.parametrize("name", sorted(AT_QUERY))
def test_out_of_range_values_met_by_a_query_are_one_line_and_503(healthy, tmp_path, name) -> None:
    index = _damaged(healthy, tmp_path, AT_QUERY[name])
    for mode in ("lexical", "hybrid"):
        result = runner.invoke(app, ["ask", "vacaciones anuales retribuidas", "--index", str(index), "--mode", mode])
        assert result.exit_code == 1, (mode, result.output)
        line = one_error_line(result)
        assert "damaged" in line and "rebuild" in line, line
    client = TestClient(create_app(LegalSearch.open(index)), raise_server_exceptions=False)
    answer = client.post("/search", json={"query": "vacaciones anuales retribuidas", "mode": "lexical"})
    assert answer.status_code == 503, answer.text
    page = client.get("/", params={"q": "vacaciones anuales retribuidas", "modo": "lexical"})
    assert page.status_code == 503, page.text[:300]


@pytest.mark.parametrize("name", sorted(AT_OPEN))
def test_out_of_range_values_met_on_opening_are_one_line(healthy, tmp_path, name) -> None:
    index = _damaged(healthy, tmp_path, AT_OPEN[name])
    for args in (["info", "--index", str(index)], ["ask", "vacaciones", "--index", str(index), "--mode", "lexical"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        line = one_error_line(result)
        assert "damaged" in line and "rebuild" in line, line
