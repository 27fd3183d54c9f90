"""The HTTP API as its schema promises it: every 200 answer typed and described, every example in /docs answering
200 against the index served, /laws as JSON (lists and objects, not strings), no local path in any answer, error
lines that name the field without repeating what was sent, and the security headers on every response, the
server's own refusals (413, 401, 400) included."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from legalsearch import indexing
from legalsearch.errors import IndexFormatError
from legalsearch.search import LegalSearch
from legalsearch.server import MAX_BODY_BYTES, create_app

from .test_index_search import LAW_A
from .test_trust import EXPIRING

ANALISIS = (
    b"<analisis><materias><materia codigo='1'>Matrimonio</materia><materia codigo='2'>Registro Civil</materia>"
    b"</materias><referencias><anteriores><anterior referencia='BOE-A-1889-4763'><id_norma>BOE-A-1889-4763</id_norma>"
    b"<relacion>MODIFICA</relacion><texto>el Codigo Civil</texto></anterior></anteriores></referencias></analisis>"
)
HOSTILE = "<script>alert(1)</script>"
SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model) -> LegalSearch:
    """An index of an API XML law with two wordings of an article and its análisis, and a text law."""
    folder = tmp_path_factory.mktemp("http-api")
    with_analysis = EXPIRING.replace(b"</texto></data>", b"</texto>" + ANALISIS + b"</data>")
    (folder / "BOE-A-2099-77.xml").write_bytes(with_analysis)
    (folder / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    sources = [str(folder / "BOE-A-2099-77.xml"), str(folder / "BOE-A-2099-1.txt")]
    indexing.build(sources, folder / "idx", model=str(tiny_model), dims=[32], history=True)
    return LegalSearch.open(folder / "idx")


@pytest.fixture(scope="module")
def client(served) -> TestClient:
    return TestClient(create_app(served))


@pytest.fixture(scope="module")
def plain(tmp_path_factory, tiny_model) -> TestClient:
    """An index of the wordings in force only (no --history)."""
    folder = tmp_path_factory.mktemp("http-plain")
    (folder / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    indexing.build([str(folder / "BOE-A-2099-1.txt")], folder / "idx", model=str(tiny_model), dims=[32])
    return TestClient(create_app(LegalSearch.open(folder / "idx")))


def _documented_requests(spec: dict):
    """(method, path, query, body) for each combination of the examples /docs shows for an operation."""
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            choices = []
            for param in params:
                examples = [e["value"] for e in param.get("examples", {}).values()]
                assert examples or not param["required"], f"{method} {path}: no example for {param['name']}"
                if examples:
                    choices.append([(param, value) for value in examples])
            bodies = [None]
            if "requestBody" in operation:
                content = operation["requestBody"]["content"]["application/json"]
                bodies = [e["value"] for e in content.get("examples", {}).values()]
                assert bodies, f"{method} {path}: its request body has no example"
            for chosen, body in itertools.product(itertools.product(*choices), bodies):
                url, query = path, {}
                for param, value in chosen:
                    if param["in"] == "path":
                        url = url.replace("{" + param["name"] + "}", str(value))
                    else:
                        query[param["name"]] = value
                yield method, url, query, body


def test_every_example_in_the_docs_answers_200(client) -> None:
    spec = client.get("/openapi.json").json()
    tried = []
    for method, url, query, body in _documented_requests(spec):
        response = client.request(method.upper(), url, params=query, json=body)
        assert response.status_code == 200, (method, url, query, body, response.text)
        tried.append((method, url))
    assert {m for m, _ in tried} == {"get", "post"} and len(tried) >= 10
    diff = client.get("/laws/BOE-A-2099-77/articles/a2/diff", params=_examples_of(spec, "diff")).json()
    assert diff["changed"], "the documented diff compares two different wordings"
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert any(example["value"].get("filters") for example in body.values()), "a filter example, with a real law"


def _examples_of(spec: dict, suffix: str) -> dict:
    [operation] = [ops["get"] for path, ops in spec["paths"].items() if path.endswith(suffix)]
    queried = [p for p in operation["parameters"] if p["in"] == "query"]
    return {p["name"]: next(iter(p["examples"].values()))["value"] for p in queried}


def test_every_200_answer_is_typed_and_every_field_described(client) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
            ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
            assert ref, f"{method} {path}: its 200 answer is untyped: {schema}"
    answers = {name: s for name, s in schemas.items() if name not in {"HTTPValidationError", "ValidationError"}}
    for name, schema in answers.items():
        assert schema.get("additionalProperties") in (None, False), f"{name}: Swagger would show additionalProp1"
        for field, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field} has no description"
            maps = prop.get("additionalProperties") or any(o.get("additionalProperties") for o in prop.get("anyOf", []))
            assert not maps or (name, field) == ("SyncRun", "failed"), f"{name}.{field}: Swagger shows additionalProp1"


def test_answers_carry_only_documented_fields(client) -> None:
    """A field the library adds must be documented in server_models before the API serves it."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]

    def declared(name: str) -> set[str]:
        return set(schemas[name]["properties"])

    hit = client.post("/search", json={"query": "matrimonio juez", "k": 3}).json()["hits"][0]
    assert set(hit) <= declared("Hit"), set(hit) - declared("Hit")
    law = client.get("/laws").json()[0]
    assert set(law) <= declared("LawSummary"), set(law) - declared("LawSummary")
    one = client.get("/laws/BOE-A-2099-77").json()
    assert set(one) <= declared("Law") and set(one["units"][0]) <= declared("Unit")
    article = client.get("/laws/BOE-A-2099-77/articles/a2").json()
    assert set(article) <= declared("Article") and set(article["wordings"][0]) <= declared("WordingLink")
    diff = client.get("/laws/BOE-A-2099-77/articles/a2/diff", params={"from": "2001-01-01", "to": "2006-01-01"})
    assert set(diff.json()) <= declared("Diff") and set(diff.json()["from"]) <= declared("DiffSide")
    feed = client.get("/changes", params={"since": "2001-01-01"}).json()[0]
    assert set(feed) <= declared("LawChanges") and set(feed["changes"][0]) <= declared("Change")
    assert set(client.get("/health").json()) <= declared("Health")


def test_laws_are_json_with_lists_and_objects_and_no_paths(client, served) -> None:
    laws = client.get("/laws").json()
    by_id = {law["boe_id"]: law for law in laws}
    assert by_id["BOE-A-2099-77"]["materias"] == ["Matrimonio", "Registro Civil"]
    assert by_id["BOE-A-2099-77"]["referencias"]["anteriores"][0]["id_norma"] == "BOE-A-1889-4763"
    assert by_id["BOE-A-2099-1"]["materias"] == [] and by_id["BOE-A-2099-1"]["referencias"] == {}
    assert all("origin" not in law for law in laws)
    one = client.get("/laws/BOE-A-2099-77").json()
    assert one["materias"] == ["Matrimonio", "Registro Civil"] and "origin" not in one
    assert served.laws()[0]["materias"] == ["Matrimonio", "Registro Civil"], "Python gives the same list"


def test_no_answer_discloses_a_local_path(client, served, plain, tiny_model) -> None:
    health = client.get("/health").json()
    assert health["index"] == "idx" and health["model"] == Path(tiny_model).name
    assert health["model_source"] == "local folder" and health["counts"]["laws"] == 2
    root = str(Path(served.path).parent)
    for path in ("/health", "/laws", "/laws/BOE-A-2099-77", "/laws/BOE-A-2099-1", "/syncs", "/openapi.json"):
        text = client.get(path).text
        assert root not in text and str(tiny_model) not in text, path
    no_history = plain.get("/laws/BOE-A-2099-1/articles/a1/diff", params={"from": "2001-01-01", "to": "2006-01-01"})
    assert no_history.status_code == 400 and "holds only the wording in force" in no_history.json()["detail"]
    assert no_history.json()["detail"].startswith("…/idx holds only"), "the index named by its folder's name only"
    assert str(plain.app.state.pages.search.path.parent) not in no_history.text


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "field"),
    [
        ("post", "/search", {"query": "x", "filters": {"laws": [HOSTILE]}}, 400, "law"),
        ("post", "/search", {"query": "x", "filters": {"laws": [f"BOE-A-{n:034d}" for n in range(200)]}}, 400, "law"),
        ("post", "/search", {"query": "x", "filters": {"rangos": [HOSTILE * 3]}}, 400, "rango"),
        ("post", "/search", {"query": "x", "filters": {"materias": ["<b>" * 60]}}, 400, "materia"),
        ("post", "/search", {"query": "x", "filters": {"kinds": [HOSTILE]}}, 400, "kind"),
        ("post", "/search", {"query": "x", "filters": {"as_of": "<script>"}}, 422, "as_of"),
        ("post", "/search", {"query": "x", "filters": {"laws": [HOSTILE * 10]}}, 422, "laws"),
        ("post", "/search", {"query": "x", HOSTILE: 1}, 422, "body"),
        ("get", "/laws/" + HOSTILE.replace("/", ""), None, 404, "boe_id"),
        ("get", "/laws/BOE-A-2099-77/articles/" + HOSTILE.replace("/", ""), None, 404, "article_id"),
        ("get", "/laws/BOE-A-2099-77/articles/a2?as_of=<script>", None, 422, "as_of"),
        ("get", "/laws/BOE-A-2099-77/articles/a2/diff?from=1990-01-01&to=<script>", None, 422, "to"),
        ("get", "/laws/" + "<i>" * 13 + "/articles/a1/diff?from=2001-01-01&to=2006-01-01", None, 404, "boe_id"),
        ("get", "/changes?since=2001-01-01&law=" + HOSTILE.replace("/", ""), None, 200, None),
    ],
)
def test_errors_name_the_field_and_never_repeat_the_input(client, method, path, payload, status, field) -> None:
    response = client.request(method.upper(), path, json=payload)
    assert response.status_code == status, response.text
    assert "<script" not in response.text and "<b>" not in response.text and "<i>" not in response.text
    if field is not None:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and field in detail and len(detail) <= 300, detail
        assert "alert(1)" not in detail or len(detail.split("alert(1)")) == 2, "at most one short prefix"


def test_a_damaged_index_is_503_without_paths(client, served, monkeypatch) -> None:
    def damaged(*args, **kwargs):
        raise IndexFormatError(f"{served.path}/catalogue.sqlite: unreadable database; rebuild it into a new --index")

    monkeypatch.setattr(served, "law", damaged)
    response = client.get("/laws/BOE-A-2099-77")
    assert response.status_code == 503 and str(served.path) not in response.text
    assert response.json()["detail"].startswith("the index could not be read")
    page = client.get("/ley/BOE-A-2099-77")
    assert page.status_code == 503 and "El índice no se puede consultar" in page.text
    assert str(served.path) not in page.text and page.headers["x-content-type-options"] == "nosniff"


def test_every_response_carries_the_security_headers(served) -> None:
    guarded = TestClient(create_app(served, token="s3cret-token-0123456789", hosts=frozenset({"testserver"})))
    auth = {"Authorization": "Bearer s3cret-token-0123456789"}
    huge = json.dumps({"queries": ["matrimonio " * 100] * 2000})
    assert len(huge) > MAX_BODY_BYTES
    responses = {
        413: guarded.post("/search/batch", content=huge, headers={"content-type": "application/json", **auth}),
        401: guarded.get("/health"),
        400: guarded.get("/health", headers={"host": "evil.example", **auth}),
        404: guarded.get("/laws/BOE-A-1-1", headers=auth),
        422: guarded.post("/search", json={"query": ""}, headers=auth),
        200: guarded.get("/", headers=auth),
    }
    for status, response in responses.items():
        assert response.status_code == status, (status, response.text)
        for header in SECURITY_HEADERS:
            assert header in response.headers, (status, header)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    docs = guarded.get("/docs", headers=auth)
    assert docs.status_code == 200 and "'unsafe-inline'" in docs.headers["content-security-policy"]


def test_error_lines_drop_paths_and_long_or_odd_values_but_keep_links() -> None:
    from legalsearch.echoes import redacted, shown

    line = redacted(
        "/srv/data/indexes/main holds only the wording in force; see https://www.boe.es/buscar/act.php?id=BOE-A-1 "
        "or GET /laws",
    )
    assert line == (
        "…/main holds only the wording in force; see https://www.boe.es/buscar/act.php?id=BOE-A-1 or GET /laws"
    )
    assert redacted("cannot read ~/models/bge-m3/config.json: truncated") == "cannot read …/config.json: truncated"
    assert shown("BOE-A-2015-11430") == "BOE-A-2015-11430", "a plain value is shown as sent"
    assert shown("\x1b[2J" + "a" * 40) == "??2J" + "a" * 20 + "…", "no escape sequence reaches a terminal"
    sent = ["x" * 5000, "índice <b>"]
    line = redacted(f"law {sent[0]} is not in this index; rango {sent[1]!r} either\nsecond line", sent)
    assert line == f"law {'x' * 24}… is not in this index; rango 'índice ?b?' either"
    assert len(redacted("y " * 10_000)) == 300


def test_a_long_list_of_unknown_laws_is_named_by_a_few(client) -> None:
    laws = [f"BOE-A-1-{n}" for n in range(200)]
    response = client.post("/search", json={"query": "matrimonio", "filters": {"laws": laws}})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("law BOE-A-1-0, BOE-A-1-1, BOE-A-1-2 and 197 more is not in this index")
    assert "BOE-A-1-3," not in response.text


def test_an_unexpected_failure_is_one_line_with_the_security_headers(served, monkeypatch) -> None:
    """A bug (here: listing the laws fails) answers 500 as every other error: one line that names no path of
    the server, the security headers on it (Starlette's own 500 came outside them, as plain text), a Spanish page
    on a page path."""

    def broken(*args, **kwargs):
        raise RuntimeError("boom at /srv/secret/indexes/default/catalogue.sqlite")

    monkeypatch.setattr(served, "laws", broken)
    app = TestClient(create_app(served), raise_server_exceptions=False)
    failed = app.get("/laws")
    assert failed.status_code == 500 and set(SECURITY_HEADERS) <= set(failed.headers), failed.headers
    assert failed.json() == {"detail": "internal error: the server's log says what happened"}
    page = app.get("/", params={"q": "matrimonio"})
    assert page.status_code == 500 and set(SECURITY_HEADERS) <= set(page.headers)
    assert "Error interno" in page.text and "/srv/secret" not in page.text and "boom" not in page.text


def test_head_answers_as_get_without_a_body(client) -> None:
    """`curl -I`, link checkers and uptime monitors ask HEAD: it answered 405 on every page and endpoint."""
    for path in ("/health", "/laws", "/", "/ley/BOE-A-2099-77", "/static/style.css"):
        head, get = client.head(path), client.get(path)
        assert head.status_code == get.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path
        assert set(SECURITY_HEADERS) <= set(head.headers), path
    assert client.head("/search").status_code == 405, "POST-only stays so"
