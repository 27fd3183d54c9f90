"""The HTTP API through a real HTTP client against uvicorn on 127.0.0.1, prompt context, and the LangChain and
LlamaIndex retrievers with the real libraries."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from legalsearch import indexing
from legalsearch.cli import app
from legalsearch.embedding import load_encoder
from legalsearch.search import Filters, LegalSearch
from legalsearch.server import create_app

from .test_index_search import LAW_A, LAW_B

runner = CliRunner()


@pytest.fixture(scope="module")
def search(tmp_path_factory, tiny_model) -> LegalSearch:
    folder = tmp_path_factory.mktemp("serve")
    (folder / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    (folder / "BOE-A-2099-2.txt").write_text(LAW_B, encoding="utf-8")
    encoder = load_encoder(str(tiny_model))
    indexing.build(
        [str(folder / "BOE-A-2099-1.txt"), str(folder / "BOE-A-2099-2.txt")], folder / "idx", encoder=encoder
    )
    return LegalSearch.open(folder / "idx", encoder=encoder)


@pytest.fixture(scope="module")
def api(search):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(search), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    server.should_exit = True
    thread.join(timeout=10)


HIT_KEYS = {"rank", "score", "boe_id", "law_title", "article_id", "heading", "path", "url", "text", "citation"}


def test_search_and_batch(api) -> None:
    response = api.post("/search", json={"query": "fianza en metálico", "k": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "fianza en metálico" and len(body["hits"]) == 2
    assert set(body["hits"][0]) >= HIT_KEYS and "a2" in {h["article_id"] for h in body["hits"]}
    lexical = api.post("/search", json={"query": "fianza en metálico", "k": 2, "mode": "lexical"}).json()["hits"]
    assert [(h["boe_id"], h["article_id"]) for h in lexical] == [("BOE-A-2099-2", "a2")]
    filtered = api.post("/search", json={"query": "vacaciones", "k": 5, "filters": {"laws": ["BOE-A-2099-2"]}})
    assert {h["boe_id"] for h in filtered.json()["hits"]} == {"BOE-A-2099-2"}
    batch = api.post("/search/batch", json={"queries": ["vacaciones", "fianza"], "k": 1, "dim": 64})
    assert batch.status_code == 200
    assert [r["query"] for r in batch.json()["results"]] == ["vacaciones", "fianza"]
    assert all(len(r["hits"]) == 1 for r in batch.json()["results"])


def test_laws_articles_health_and_docs(api, search) -> None:
    laws = api.get("/laws").json()
    assert [law["boe_id"] for law in laws] == ["BOE-A-2099-1", "BOE-A-2099-2"]
    law = api.get("/laws/BOE-A-2099-1").json()
    assert [u["article_id"] for u in law["units"]] == ["a1", "a2", "a3", "dfu"]
    article = api.get("/laws/BOE-A-2099-1/articles/a2").json()
    assert article["text"] == "Los españoles son mayores de edad a los dieciocho años."
    assert article["url"] == "https://www.boe.es/buscar/act.php?id=BOE-A-2099-1#a2"
    assert api.get("/laws/BOE-A-2099-1/articles/a2", params={"as_of": "2020-01-01"}).json()["text"] == article["text"]
    health = api.get("/health").json()
    assert health["status"] == "ok" and health["counts"]["laws"] == 2 and health["index"] == "idx"
    recorded = json.loads((search.path / "manifest.json").read_text())["model"]
    assert health["runtime"] == f"{recorded['backend']} {recorded['precision']}"
    assert "/search" in api.get("/openapi.json").json()["paths"]
    assert api.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "detail"),
    [
        ("post", "/search", {"query": ""}, 422, "at least 1 character"),
        ("post", "/search", {"query": "x" * 4001}, 422, "at most 4000 characters"),
        ("post", "/search", {"query": "x", "k": 0}, 422, "greater than or equal to 1"),
        ("post", "/search", {"query": "x", "k": 101}, 422, "less than or equal to 100"),
        ("post", "/search", {"query": "x", "mode": "bm25"}, 422, "'dense', 'funnel', 'lexical' or 'hybrid'"),
        ("post", "/search", {"query": "x", "dim": 256}, 400, "dim 256 was not built for this index; built: 128, 64"),
        ("post", "/search", {"query": "   "}, 400, "empty query"),
        ("post", "/search", {"query": "x", "filters": {"laws": ["BOE-A-1-1"]}}, 400, "law BOE-A-1-1 is not in"),
        ("post", "/search", {"query": "x", "filters": {"kinds": ["ley"]}}, 400, "unknown kind 'ley'"),
        ("post", "/search", {"query": "x", "filters": {"as_of": "ayer"}}, 422, "give a date as YYYY-MM-DD"),
        ("post", "/search", {"k": 3}, 422, "Field required"),
        ("post", "/search/batch", {"queries": []}, 422, "at least 1 item"),
        ("post", "/search/batch", {"queries": ["x"] * 65}, 422, "at most 64 items"),
        ("get", "/laws/BOE-A-1-1", None, 404, "boe_id 'BOE-A-1-1': no such law in this index; GET /laws lists them"),
        ("get", "/laws/BOE-A-2099-1/articles/a99", None, 404, "article_id 'a99': no such unit in this law"),
        ("get", "/laws/BOE-A-2099-1/articles/a2?as_of=ayer", None, 422, "give a date as YYYY-MM-DD"),
    ],
)
def test_bad_requests_are_clear_4xx(api, method, path, payload, status, detail) -> None:
    response = api.request(method.upper(), path, json=payload)
    assert response.status_code == status
    assert detail in str(response.json()["detail"])


def test_context_lists_numbered_sources_within_the_budget(search) -> None:
    text = search.context("vacaciones", k=3, max_tokens=10_000, mode="lexical")
    assert text.startswith("[1] Art. 1 · Ley 1/2099, de pruebas de vacaciones (BOE-A-2099-1) "
                           "https://www.boe.es/buscar/act.php?id=BOE-A-2099-1#a1\n")  # fmt: skip
    assert "El trabajador tendrá derecho a vacaciones anuales" in text
    full = search.context("vacaciones mayores de edad notificará", k=3, max_tokens=10_000, mode="lexical")
    first = full.split("\n\n")[0]
    budget = search.encoder.count_tokens([first])[0] + 5
    small = search.context("vacaciones mayores de edad notificará", k=3, max_tokens=budget, mode="lexical")
    assert small == first, "the next source does not fit, so it is left out"
    assert "[3]" in full and search.encoder.count_tokens([small])[0] <= budget
    result = runner.invoke(app, ["ask", "fianza", "--context", "--index", str(search.path), "--mode", "lexical"])
    assert result.exit_code == 0 and result.stdout.startswith("[1] Art. 2 · Ley 2/2099")


def test_langchain_retriever(search) -> None:
    from langchain_core.documents import Document

    from legalsearch.integrations.langchain import LegalSearchRetriever

    retriever = LegalSearchRetriever(search=search, k=2, mode="lexical", filters=Filters(laws=("BOE-A-2099-2",)))
    documents = retriever.invoke("fianza en metálico")
    assert all(isinstance(d, Document) for d in documents) and len(documents) == 1
    assert documents[0].page_content == "Será obligatoria la exigencia y prestación de fianza en metálico."
    assert documents[0].metadata["citation"] == "Art. 2 · Ley 2/2099, de arrendamientos de prueba (BOE-A-2099-2)"
    assert documents[0].metadata["url"].endswith("#a2")
    assert 0.0 <= documents[0].metadata["relevance"] <= 1.0 and isinstance(documents[0].metadata["good_match"], bool)


def test_llamaindex_retriever(search) -> None:
    from llama_index.core.schema import NodeWithScore

    from legalsearch.integrations.llamaindex import LegalSearchLlamaRetriever

    nodes = LegalSearchLlamaRetriever(search, k=3, mode="lexical").retrieve("los españoles son mayores de edad")
    assert all(isinstance(n, NodeWithScore) for n in nodes)
    assert nodes[0].node.node_id == "BOE-A-2099-1#a2" and nodes[0].node.metadata["boe_id"] == "BOE-A-2099-1"
    assert nodes[0].score == pytest.approx(nodes[0].node.metadata["score"])


def test_serve_without_an_index_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--index", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no index here" in result.stderr
