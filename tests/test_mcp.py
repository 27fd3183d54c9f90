"""`legalsearch mcp`: the index's tools over the Model Context Protocol, tested end to end with the SDK's own
client over stdio (a real `legalsearch mcp` process)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import legalsearch
from legalsearch import indexing

from .conftest import CORPORA, needs_corpora

pytest.importorskip("mcp")


@pytest.fixture(scope="module")
def ce_index(tmp_path_factory, tiny_model) -> Path:
    folder = tmp_path_factory.mktemp("mcp")
    indexing.build(
        [str(CORPORA / "xml" / "BOE-A-1978-31229.texto.xml")], folder / "idx", model=str(tiny_model), dims=[32],
        history=True, backend="torch", precision="fp32",
    )  # fmt: skip
    return folder / "idx"


async def _session_calls(index: Path) -> dict:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "legalsearch", "mcp", "--index", str(index)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    results: dict = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        results["init"] = await session.initialize()
        tools = await session.list_tools()
        results["tools"] = {tool.name: tool for tool in tools.tools}
        started = time.perf_counter()
        results["search"] = await session.call_tool("search", {"query": "artículo 135 CE", "k": 2, "mode": "lexical"})
        results["round_trip_s"] = time.perf_counter() - started
        results["article"] = await session.call_tool(
            "get_article", {"boe_id": "BOE-A-1978-31229", "article_id": "a135", "as_of": "2005-01-01"}
        )
        results["laws"] = await session.call_tool("list_laws", {})
        results["diff"] = await session.call_tool(
            "diff_wordings",
            {"boe_id": "BOE-A-1978-31229", "article_id": "a135", "date_from": "2005-01-01", "date_to": "2020-01-01"},
        )
        results["changes"] = await session.call_tool("changes", {"since": "2011-01-01"})
        results["bad_date"] = await session.call_tool("changes", {"since": "2021-02-30"})
        results["unknown"] = await session.call_tool("get_article", {"boe_id": "BOE-A-1-1", "article_id": "a1"})
    return results


def _text(result) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "text", None))


@needs_corpora
def test_mcp_tools_end_to_end_over_stdio(ce_index) -> None:
    import anyio

    results = anyio.run(_session_calls, ce_index)
    assert set(results["tools"]) == {"search", "get_article", "list_laws", "diff_wordings", "changes"}
    schema = results["tools"]["search"].input_schema
    assert {"query", "k", "mode", "laws", "as_of"} <= set(schema["properties"]) and schema["required"] == ["query"]
    assert "BOE" in results["tools"]["search"].description
    assert results["init"].server_info.version == legalsearch.__version__
    found = _text(results["search"])
    assert found.startswith("[1] Art. 135 CE · BOE-A-1978-31229")
    hit = results["search"].structured_content["hits"][0]
    assert (hit["boe_id"], hit["article_id"], hit["match"]) == ("BOE-A-1978-31229", "a135", "cita")
    assert hit["good_match"]
    assert results["article"].structured_content["version_until"] == "2011-09-27"
    assert "URL: https://www.boe.es/buscar/act.php?id=BOE-A-1978-31229#a135" in found
    article = _text(results["article"])
    assert "Redacción vigente desde el 1978-12-29 hasta el 2011-09-27" in article and "&tn=1&p=19781229#a135" in article
    assert "BOE-A-1978-31229" in _text(results["laws"])
    diff = _text(results["diff"])
    assert "{+" in diff and "[-" in diff and "BOE-A-2011-15210" in diff
    assert "Artículo 135, modificado por BOE-A-2011-15210" in _text(results["changes"])
    assert results["bad_date"].is_error and "YYYY-MM-DD" in _text(results["bad_date"])
    assert results["unknown"].is_error and "BOE-A-1-1" in _text(results["unknown"])
    print(f"MCP search round trip over stdio: {results['round_trip_s'] * 1000:.0f} ms (tiny model, lexical)")
