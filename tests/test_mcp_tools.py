"""What an agent meets through MCP, with the SDK's own client (in-process): structured results under published
output schemas, the unit id get_article takes, what a lawyer types accepted, long units paged, the package
version, unknown arguments refused, and every error one short line that never repeats what was sent."""

from __future__ import annotations

import json

import pytest

from legalsearch import __version__, indexing
from legalsearch.search import LegalSearch

pytest.importorskip("mcp")

ET = "BOE-A-2015-11430"
PARAGRAPHS = 60
# An ET stand-in (its BOE id, so "ET" names it): article 56 long enough to need pages, and the ordinary ones.
ET_TEXT = "\n".join(
    [
        f"Real Decreto Legislativo 2/2015, por el que se aprueba el texto refundido de la Ley del Estatuto de los "
        f"Trabajadores. {ET}",
        "Artículo 38. Vacaciones anuales.",
        "1. El periodo de vacaciones anuales retribuidas será el pactado en convenio colectivo o contrato individual.",
        "En ningún caso la duración será inferior a treinta días naturales.",
        "Artículo 56. Despido improcedente.",
        *(f"{i}. Cuando el despido sea declarado improcedente, el empresario, en el plazo de cinco días desde la "
          f"notificación de la sentencia, podrá optar entre la readmisión del trabajador o el abono de una "
          f"indemnización equivalente a treinta y tres días de salario por año de servicio (apartado {i})."
          for i in range(1, PARAGRAPHS + 1)),
        "Artículo 56 bis. Otro supuesto.",
        "Texto breve del artículo insertado.",
        "Disposición adicional primera. Financiación.",
        "La financiación se regirá por lo dispuesto en esta disposición.",
        "",
    ]
)  # fmt: skip


@pytest.fixture(scope="module")
def et_search(tmp_path_factory, tiny_model) -> LegalSearch:
    folder = tmp_path_factory.mktemp("mcp-tools")
    (folder / f"{ET}.txt").write_text(ET_TEXT, encoding="utf-8")
    indexing.build([str(folder / f"{ET}.txt")], folder / "idx", model=str(tiny_model), dims=[32], backend="torch",
                   precision="fp32")  # fmt: skip
    return LegalSearch.open(folder / "idx")


def calls(search: LegalSearch, *requests: tuple[str, dict]) -> tuple[dict, list]:
    """(tools by name, results) of `requests` made with the SDK's client against the server over `search`."""
    import anyio
    from mcp import Client

    from legalsearch.mcp_server import create_server

    async def run():
        async with Client(create_server(search)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            results = [await client.call_tool(name, arguments) for name, arguments in requests]
            return tools, results, client.server_info

    tools, results, info = anyio.run(run)
    tools["_server_info"] = info
    return tools, results


def text(result) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "text", None))


def test_search_returns_structured_hits_under_its_output_schema_with_the_unit_id(et_search) -> None:
    import jsonschema

    tools, [found] = calls(et_search, ("search", {"query": "vacaciones anuales retribuidas", "k": 3}))
    assert tools["_server_info"].version == __version__ != ""
    schema = tools["search"].output_schema
    assert schema["properties"]["hits"]["type"] == "array"
    jsonschema.validate(found.structured_content, schema)
    first = found.structured_content["hits"][0]
    assert (first["boe_id"], first["article_id"]) == (ET, "a38")
    assert first["citation"].startswith("Art. 38 ET · ")
    assert first["url"].endswith("#a38") and first["status"] == "vigente" and first["complete"]
    assert "treinta días naturales" in first["text"]
    assert first["good_match"] and first["relevance"] >= 0.5 and "vacaciones" in first["matched_terms"]
    assert found.structured_content["good_match"]
    readable = text(found)
    assert readable.startswith("[1] Art. 38 ET · ")
    assert f'article_id: a38 (get_article boe_id="{ET}" article_id="a38")' in readable


def test_every_tool_publishes_an_output_schema_and_answers_under_it(et_search) -> None:
    import jsonschema

    requests = [("get_article", {"boe_id": ET, "article_id": "a38"}), ("list_laws", {}),
                ("changes", {"since": "2000-01-01"})]  # fmt: skip
    tools, results = calls(et_search, *requests)
    for (name, _), result in zip(requests, results, strict=True):
        assert not result.is_error, text(result)
        jsonschema.validate(result.structured_content, tools[name].output_schema)
        assert text(result), f"{name} keeps a readable text part"
    [law] = results[1].structured_content["laws"]
    assert (law["boe_id"], law["short_name"], law["units"]) == (ET, "ET", 4)
    assert set(tools) - {"_server_info"} == {"search", "get_article", "list_laws", "diff_wordings", "changes"}
    assert all(tools[name].output_schema for name in ("search", "get_article", "list_laws", "diff_wordings", "changes"))


@pytest.mark.parametrize(
    ("boe_id", "article_id", "expected"),
    [
        ("ET", "56", "a56"), ("et", "art. 56", "a56"), (ET, "artículo 56", "a56"), (ET, "Art. 56.2", "a56"),
        ("ET", "a56", "a56"), ("ET", "56 bis", "a56bis"), ("ET", "disposición adicional primera", "da1"),
        ("ET", "DA 1ª", "da1"),
    ],
)  # fmt: skip
def test_get_article_takes_what_a_lawyer_types(et_search, boe_id, article_id, expected) -> None:
    _, [result] = calls(et_search, ("get_article", {"boe_id": boe_id, "article_id": article_id}))
    assert not result.is_error, text(result)
    assert (result.structured_content["boe_id"], result.structured_content["article_id"]) == (ET, expected)
    assert et_search.article(boe_id, article_id)["article_id"] == expected, "Python takes the same"


def test_get_article_pages_a_long_unit_without_losing_a_character(et_search) -> None:
    whole = et_search.article(ET, "a56")["text"]
    assert len(whole) > 3 * 2000
    pages, offset = [], 0
    while offset is not None:
        _, [result] = calls(et_search, ("get_article", {"boe_id": "ET", "article_id": "56", "offset": offset,
                                                        "limit": 2000}))  # fmt: skip
        page = result.structured_content
        assert page["total_chars"] == len(whole) and len(page["text"]) <= 2000
        pages.append(page["text"])
        if page["next_offset"] is not None:
            assert f"offset={page['next_offset']}" in text(result)
        offset = page["next_offset"]
    assert "".join(pages) == whole and len(pages) > 3
    assert whole.rstrip().endswith("(apartado 60).")


def test_unknown_arguments_are_refused_in_one_line(et_search) -> None:
    tools, [misspelt, extra] = calls(
        et_search, ("search", {"query": "despido", "law": [ET]}), ("get_article", {"boe_id": ET, "article": "56"})
    )
    assert tools["search"].input_schema["additionalProperties"] is False
    assert misspelt.is_error and text(misspelt) == (
        "search: unknown argument 'law'; see the tool's input schema for the arguments it takes"
    )
    assert extra.is_error and "unknown argument 'article'" in text(extra)


def test_validation_errors_are_one_line_without_the_input(et_search) -> None:
    secret = "<script>alert(1)</script>" + "X" * 5000
    _, results = calls(
        et_search,
        ("search", {"query": "despido", "laws": ["BOE-A-1-1"] * 50_000}),
        ("search", {"query": "despido", "laws": [secret]}),
        ("search", {"query": "despido", "k": 10_000}),
        ("changes", {"since": "ayer " + secret}),
        ("search", {"query": "despido", "laws": ["BOE-A-1999-1", "BOE-A-1999-2"]}),
        ("get_article", {"boe_id": "ET", "article_id": "<b>" + "9" * 50}),
    )
    for result in results:
        line = text(result)
        assert result.is_error and "\n" not in line and len(line) <= 300, line[:400]
        assert "<" not in line and "script" not in line and "XXXXXXXXXXXXXXXXXXXXXXXXX" not in line, line
        assert "Error executing tool" not in line and "pydantic" not in line, line
    assert text(results[0]) == "search: laws: List should have at most 200 items after validation, not 50000"
    assert text(results[2]).startswith("search: k: Input should be less than or equal to 50")
    assert text(results[3]) == "changes: since must be a date written YYYY-MM-DD"
    assert "BOE-A-1999-1" in text(results[4]) and "not in this index" in text(results[4])


def test_search_says_no_good_match_for_nonsense(et_search) -> None:
    _, [nonsense, lexical] = calls(
        et_search, ("search", {"query": "xyzzy qwerty"}), ("search", {"query": "xyzzy qwerty", "mode": "lexical"})
    )
    data = nonsense.structured_content
    assert data["good_match"] is False and all(not hit["good_match"] for hit in data["hits"])
    assert text(nonsense).startswith("No good match:")
    assert lexical.structured_content["hits"] == [] and text(lexical).startswith("Sin resultados")


def test_laws_filters_take_short_names(et_search) -> None:
    _, [by_name] = calls(et_search, ("search", {"query": "vacaciones", "laws": ["ET"], "k": 1}))
    assert not by_name.is_error and by_name.structured_content["hits"][0]["boe_id"] == ET


def test_structured_content_is_plain_json(et_search) -> None:
    _, [found] = calls(et_search, ("search", {"query": "despido improcedente", "k": 2}))
    assert json.loads(json.dumps(found.structured_content)) == found.structured_content
    long_hit = next(h for h in found.structured_content["hits"] if h["article_id"] == "a56")
    assert not long_hit["complete"] and len(long_hit["text"]) < len(et_search.article(ET, "a56")["text"])


def test_the_cli_takes_the_same_as_mcp_and_python(et_search) -> None:
    from typer.testing import CliRunner

    from legalsearch.cli import app

    runner = CliRunner()
    index = str(et_search.path)
    found = runner.invoke(app, ["article", "ET", "art. 56 bis", "--index", index, "--json"])
    assert found.exit_code == 0 and json.loads(found.stdout)["article_id"] == "a56bis"
    printed = runner.invoke(app, ["article", "et", "56", "--index", index])
    assert printed.stdout.startswith("Art. 56 ET · Real Decreto Legislativo 2/2015")
    assert "(apartado 60)." in printed.stdout, "the whole unit, never cut"
    missing = runner.invoke(app, ["article", "ET", "999", "--index", index])
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no unit '999' in law 'ET' of ")
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.output


def test_http_takes_the_same(et_search) -> None:
    from fastapi.testclient import TestClient

    from legalsearch.server import create_app

    client = TestClient(create_app(et_search))
    assert client.get("/laws/ET").json()["boe_id"] == ET
    unit = client.get("/laws/ET/articles/art.%2056%20bis").json()
    assert (unit["boe_id"], unit["article_id"]) == (ET, "a56bis")
    assert unit["citation"].startswith("Art. 56 bis ET · ")
    assert client.get("/laws/ET/articles/999").status_code == 404


def test_a_crash_answers_a_generic_line(et_search, monkeypatch) -> None:
    def crash(*args, **kwargs):
        raise RuntimeError("secret detail from /home/user/private/index")

    monkeypatch.setattr(et_search, "search", crash)
    _, [result] = calls(et_search, ("search", {"query": "despido"}))
    assert result.is_error and text(result) == "Error executing tool search"
