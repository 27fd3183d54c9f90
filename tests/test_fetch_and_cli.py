"""The BOE open-data client against a local stand-in server, and the `fetch` / `parse` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch.cli import app
from legalsearch.errors import FetchError
from legalsearch.sources import parse_file
from legalsearch.sources.fetch import BOEClient

METADATA = b"""<?xml version="1.0" encoding="utf-8"?>
<response><status><code>200</code><text>ok</text></status><data>
<metadatos><identificador>BOE-A-2099-1</identificador><departamento codigo="1">Jefatura del Estado</departamento>
<rango codigo="1300">Ley</rango><fecha_disposicion>20990101</fecha_disposicion>
<titulo>Ley 1/2099, de 1 de enero, de pruebas.</titulo><fecha_publicacion>20990102</fecha_publicacion>
<fecha_vigencia>20990103</fecha_vigencia><estatus_derogacion>N</estatus_derogacion>
<url_eli>https://www.boe.es/eli/es/l/2099/01/01/1</url_eli></metadatos>
<analisis><referencias><anteriores><anterior><texto>Ley de 1900</texto></anterior></anteriores></referencias></analisis>
</data></response>"""
TEXTO = """<?xml version="1.0" encoding="utf-8"?>
<response><status><code>200</code><text>ok</text></status><data><texto>
<bloque id="ti" tipo="encabezado" titulo="TÍTULO I"><version id_norma="BOE-A-2099-1" fecha_publicacion="20990102"
 fecha_vigencia="20990103"><p class="titulo_num">TÍTULO I</p><p class="titulo_tit">De las pruebas</p></version></bloque>
<bloque id="a1" tipo="precepto" titulo="Artículo 1"><version id_norma="BOE-A-2099-1" fecha_publicacion="20990102"
 fecha_vigencia="20990103"><p class="articulo">Artículo 1. Objeto.</p><p class="parrafo">Texto original.</p></version>
<version id_norma="BOE-A-2100-7" fecha_publicacion="21000105" fecha_vigencia="21000106">
<p class="articulo">Artículo 1. Objeto.</p><p class="parrafo">Texto reformado.</p>
<blockquote><p class="nota_pie">Se modifica por la Ley 7/2100. <a class="refPost">Ref. BOE-A-2100-7</a></p></blockquote>
</version></bloque>
<bloque id="a2" tipo="precepto" titulo="Artículo 2"><version id_norma="BOE-A-2100-7" fecha_publicacion="21000105"
 fecha_vigencia="21000106"><p class="articulo">Artículo 2. Añadido.</p><p class="parrafo">Nuevo.</p></version></bloque>
</texto></data></response>""".encode()
runner = CliRunner()


@pytest.fixture
def api(boe_server, monkeypatch):
    base, routes, hits = boe_server
    routes["/datosabiertos/api/legislacion-consolidada/id/BOE-A-2099-1"] = (200, METADATA)
    routes["/datosabiertos/api/legislacion-consolidada/id/BOE-A-2099-1/texto"] = (200, TEXTO)
    monkeypatch.setenv("LEGALSEARCH_BOE_API", base)
    return base, routes, hits


def client(base: str, cache: Path, **kw) -> BOEClient:
    return BOEClient(cache=cache, base_url=base, delay=0, backoff=0, **kw)


def test_fetch_merges_metadata_and_text_into_one_cached_file(api, tmp_path: Path) -> None:
    base, _, hits = api
    path = client(base, tmp_path / "cache").get("BOE-A-2099-1")
    assert path == tmp_path / "cache" / "BOE-A-2099-1.xml"
    law = parse_file(path)
    assert (law.title, law.rango, law.status) == ("Ley 1/2099, de 1 de enero, de pruebas.", "Ley", "vigente")
    assert [a.article_id for a in law.articles] == ["a1", "a2"]
    assert law.article("a1").text == "Texto reformado." and law.article("a1").path == ("TÍTULO I. De las pruebas",)
    assert law.article("a1").notes == ("Se modifica por la Ley 7/2100. Ref. BOE-A-2100-7",)
    as_of = parse_file(path, as_of="2099-06-01")
    assert [a.article_id for a in as_of.articles] == ["a1"] and as_of.article("a1").text == "Texto original."
    requests = len(hits)
    client(base, tmp_path / "cache").get("BOE-A-2099-1")  # cached: no request
    assert len(hits) == requests


def test_fetch_unknown_id_is_a_clear_error(api, tmp_path: Path) -> None:
    base, _, _ = api
    with pytest.raises(FetchError, match=r"BOE-A-2099-404: not at the BOE \(404: no such consolidated norm"):
        client(base, tmp_path).get("BOE-A-2099-404")


def test_fetch_retries_server_errors_then_succeeds(api, tmp_path: Path) -> None:
    base, routes, hits = api
    answers = iter([(503, b"busy"), (500, b"oops"), (200, METADATA)])
    routes["/datosabiertos/api/legislacion-consolidada/id/BOE-A-2099-1"] = (200, lambda: next(answers))
    assert client(base, tmp_path, retries=3).get("BOE-A-2099-1").exists()
    assert hits.count("/datosabiertos/api/legislacion-consolidada/id/BOE-A-2099-1") == 3


def test_fetch_never_leaves_a_partial_file(api, tmp_path: Path) -> None:
    base, routes, _ = api
    routes["/datosabiertos/api/legislacion-consolidada/id/BOE-A-2099-1/texto"] = (200, TEXTO[: len(TEXTO) // 2])
    with pytest.raises(FetchError, match="not valid XML"):
        client(base, tmp_path / "cache").get("BOE-A-2099-1")
    assert not (tmp_path / "cache" / "BOE-A-2099-1.xml").exists()
    assert not list(tmp_path.rglob("*.part-*"))


def test_fetch_without_network_says_so_once(tmp_path: Path) -> None:
    offline = client("http://127.0.0.1:9/api", tmp_path, retries=2)
    with pytest.raises(FetchError, match=r"cannot reach the BOE API .* after 2 tries"):
        offline.get("BOE-A-1978-31229")
    with pytest.raises(FetchError, match="BOE-A-1889-4763: not tried, the BOE API was unreachable just before"):
        offline.get("BOE-A-1889-4763")  # a list of 40 ids does not wait 40 times


def test_cli_fetch_and_parse_json_from_a_list_of_ids(api, tmp_path: Path) -> None:
    ids = tmp_path / "laws.txt"
    ids.write_text("BOE-A-2099-1  # Ley de pruebas\n", encoding="utf-8")
    result = runner.invoke(app, ["fetch", str(ids), "--cache", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "BOE-A-2099-1.xml").exists()
    result = runner.invoke(app, ["parse", str(ids), "--json", "--cache", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    [law] = json.loads(result.stdout)
    assert law["boe_id"] == "BOE-A-2099-1" and law["counts"] == {"articulo": 2}
    assert law["articles"][0]["url"] == "https://www.boe.es/buscar/act.php?id=BOE-A-2099-1#a1"


def test_cli_parse_reports_each_bad_input_on_one_line_and_goes_on(tmp_path: Path) -> None:
    good = tmp_path / "BOE-A-2099-5.txt"
    good.write_text("Artículo 1. Objeto.\nTexto.\nArtículo 2. Otro.\nMás.\n", encoding="utf-8")
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"%PDF-1.4 this is not really a pdf")
    result = runner.invoke(app, ["parse", str(empty), str(good), str(garbage), "--no-table"])
    assert result.exit_code == 1
    assert "BOE-A-2099-5" in result.stdout and "articulo: 2" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [f"error: {empty}: empty file", f"error: {garbage}: unreadable PDF" + errors[1].split("PDF", 1)[1]]
    assert "Traceback" not in result.output


def test_cli_parse_shows_a_table_of_units(tmp_path: Path) -> None:
    good = tmp_path / "BOE-A-2099-5.txt"
    good.write_text("Artículo 1. Objeto.\nTexto.\n", encoding="utf-8")
    result = runner.invoke(app, ["parse", str(good)])
    assert result.exit_code == 0
    assert "a1" in result.stdout and "Artículo 1. Objeto." in result.stdout


def test_cli_parse_unknown_id_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("legalsearch.sources.fetch.time.sleep", lambda seconds: None)
    result = runner.invoke(app, ["parse", "BOE-A-1978-31229", "--cache", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: BOE-A-1978-31229: cannot reach the BOE API")
