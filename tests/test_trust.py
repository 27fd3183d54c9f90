"""Units a lawyer can trust (expired blocks, repealed articles and ranges, indexes that are not units, headings
in every path, citations with short names, one language) and input that is refused clearly (impossible dates,
unknown keys, oversized bodies) in the CLI, Python and HTTP."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from legalsearch import indexing
from legalsearch.cli import app
from legalsearch.errors import QueryError, UsageError
from legalsearch.search import Filters, Hit, LegalSearch
from legalsearch.sources import parse_bytes, parse_file

from .conftest import CORPORA, corpus_law, needs_corpora

runner = CliRunner()

# A consolidated law as the BOE API serves it: a Sección that expired in 2010 (structure only), an article that
# expired on 2015-06-01 after two wordings, one whose fecha_caducidad is 99999999 (no end), and a repealed range.
EXPIRING = """<?xml version="1.0" encoding="utf-8"?>
<response><status><code>200</code></status><data>
<metadatos><identificador>BOE-A-2099-77</identificador><titulo>Ley 77/2099, de prueba del matrimonio.</titulo>
<rango>Ley</rango><estatus_derogacion>N</estatus_derogacion></metadatos>
<texto>
<bloque id="ti" tipo="encabezado" titulo="TÍTULO I"><version id_norma="BOE-A-2099-77" fecha_publicacion="20000101"
 fecha_vigencia="20000102"><p class="titulo_num">TÍTULO I</p><p class="titulo_tit">Del matrimonio</p></version></bloque>
<bloque id="s1" tipo="precepto" fecha_caducidad="20100101" titulo="Sección primera"><version id_norma="BOE-A-2099-77"
 fecha_publicacion="20000101" fecha_vigencia="20000102"><p class="seccion">Sección primera. De las formas</p></version>
</bloque>
<bloque id="a1" tipo="precepto" titulo="Artículo 1"><version id_norma="BOE-A-2099-77" fecha_publicacion="20000101"
 fecha_vigencia="20000102"><p class="articulo">Artículo 1.</p><p class="parrafo">El matrimonio se celebra ante el juez
 de paz.</p></version></bloque>
<bloque id="a2" tipo="precepto" fecha_caducidad="20150601" titulo="Artículo 2"><version id_norma="BOE-A-2099-77"
 fecha_publicacion="20000101" fecha_vigencia="20000102"><p class="articulo">Artículo 2.</p><p class="parrafo">La
 dispensa de edad para el matrimonio corresponde al juez.</p></version><version id_norma="BOE-A-2005-1"
 fecha_publicacion="20050101" fecha_vigencia="20050102"><p class="articulo">Artículo 2.</p><p class="parrafo">La
 dispensa de edad para el matrimonio corresponde al juez de primera instancia.</p></version></bloque>
<bloque id="a3" tipo="precepto" fecha_caducidad="99999999" titulo="Artículo 3"><version id_norma="BOE-A-2099-77"
 fecha_publicacion="20000101" fecha_vigencia="20000102"><p class="articulo">Artículo 3.</p><p class="parrafo">Los
 cónyuges son iguales en derechos y deberes en el matrimonio.</p></version></bloque>
<bloque id="a4-a6" tipo="precepto" titulo="Artículos 4 a 6"><version id_norma="BOE-A-2099-77"
 fecha_publicacion="20000101" fecha_vigencia="20000102"><p class="articulo">Artículos 4 a 6.</p>
 <p class="parrafo">(Derogados)</p></version></bloque>
<bloque id="a7" tipo="precepto" titulo="Artículo 7"><version id_norma="BOE-A-2099-77" fecha_publicacion="20000101"
 fecha_vigencia="20000102"><p class="articulo">Artículo 7. (Derogado)</p></version></bloque>
</texto></data></response>
""".encode()


def test_fecha_caducidad_ends_a_unit_and_99999999_never_does() -> None:
    law = parse_bytes(EXPIRING, "BOE-A-2099-77.xml", history=True)
    units = {a.article_id: a for a in law.articles}
    assert (units["a2"].status, units["a2"].version_until) == ("derogado", "2015-06-01")
    assert (units["a3"].status, units["a3"].version_until) == ("vigente", None)
    assert units["a1"].path == ("TÍTULO I. Del matrimonio",), "an expired Sección leaves the path"
    assert [(h.article_id, h.version_until, h.status) for h in law.history] == [("a2", "2005-01-02", "vigente")]
    then = parse_bytes(EXPIRING, "BOE-A-2099-77.xml", as_of="2009-12-31")
    assert then.article("a1").path == ("TÍTULO I. Del matrimonio", "Sección primera. De las formas")
    assert then.article("a2").status == "vigente", "in force that day"
    later = parse_bytes(EXPIRING, "BOE-A-2099-77.xml", as_of="2015-06-01")
    assert "a2" not in {a.article_id for a in later.articles}, "out of force from its fecha_caducidad, inclusive"
    assert (units["a4-a6"].status, units["a7"].status) == ("derogado", "derogado")


@pytest.fixture(scope="module")
def expiring_index(tmp_path_factory, tiny_model) -> LegalSearch:
    folder = tmp_path_factory.mktemp("expiring")
    (folder / "BOE-A-2099-77.xml").write_bytes(EXPIRING)
    indexing.build([str(folder / "BOE-A-2099-77.xml")], folder / "idx", model=str(tiny_model), dims=[32], history=True)
    return LegalSearch.open(folder / "idx")


def test_expired_and_repealed_units_are_kept_marked_ranked_after_and_filtered(expiring_index) -> None:
    search = expiring_index
    query = "dispensa de edad para el matrimonio juez"
    hits = search.search(query, k=10, mode="lexical")
    statuses = [h.status for h in hits]
    assert "derogado" in statuses and statuses == sorted(statuses, key=lambda s: s == "derogado"), statuses
    a2 = next(h for h in hits if h.article_id == "a2")
    assert a2.citation.endswith(", derogado desde el 2015-06-01")
    assert "a2" not in {
        h.article_id for h in search.search(query, k=10, mode="lexical", filters=Filters(vigentes=True))
    }
    on = search.search(query, k=10, mode="lexical", filters=Filters(as_of="2015-06-01"))
    assert "a2" not in {h.article_id for h in on}, "as of its end date it is no longer returned"
    before = search.search(query, k=10, mode="lexical", filters=Filters(as_of="2010-05-05"))
    assert [h.version_date for h in before if h.article_id == "a2"] == ["2005-01-02"]
    older = search.search(query, k=10, mode="lexical", filters=Filters(as_of="2003-05-05"))
    assert [h.version_date for h in older if h.article_id == "a2"] == ["2000-01-02"]


def test_an_article_inside_a_repealed_range_answers_with_the_range(expiring_index) -> None:
    [hit, *_] = expiring_index.search("artículo 5 de la Ley 77/2099", k=3, mode="lexical")
    assert (hit.match, hit.article_id, hit.heading, hit.status) == ("cita", "a4-a6", "Artículos 4 a 6.", "derogado")
    assert hit.citation.startswith("Arts. 4 a 6 · Ley 77/2099") and hit.citation.endswith(", derogado")
    result = runner.invoke(app, ["ask", "artículo 7 de la Ley 77/2099", "--index", str(expiring_index.path), "--json"])
    assert json.loads(result.stdout)[0]["status"] == "derogado"


@needs_corpora
@pytest.mark.parametrize(
    ("relative", "article_id"),
    [
        ("pdf/BOE-A-1994-26003.pdf", "a38-a40"),  # LAU: "Artículos 38 a 40. (Derogados)"
        ("html-derived/BOE-A-1995-24292.html", "a46"),  # Prevención de Riesgos Laborales: a single "(Derogado)"
        ("html-derived/BOE-A-1995-24292.html", "a52"),
    ],
)
def test_real_repealed_units_are_kept_and_marked(relative, article_id) -> None:
    unit = corpus_law(relative).article(article_id)
    assert unit.status == "derogado" and unit.heading.startswith("Art")


@needs_corpora
def test_an_index_of_a_law_is_never_a_unit_and_every_article_carries_its_headings() -> None:
    law = parse_file(CORPORA / "xml" / "BOE-A-2015-11430.xml")  # the ET as published in the diario
    assert "an" not in {a.article_id for a in law.articles}, "the ÍNDICE was the one 'anexo' unit"
    assert all(sum(line.startswith("Artículo ") for line in a.text.split("\n")) < 10 for a in law.articles)
    articles = [a for a in law.articles if a.kind == "articulo" and a.article_id != "au"]
    assert len(articles) >= 90 and all(any(p.startswith("TÍTULO") for p in a.path) for a in articles)
    assert law.article("a1").path[1:] == (
        "TÍTULO I. De la relación individual de trabajo", "CAPÍTULO I. Disposiciones generales",
        "Sección 1.ª Ámbito y fuentes",
    )  # fmt: skip


def _hit(**overrides) -> Hit:
    fields = dict(rank=1, score=1.0, boe_id="BOE-A-2015-11430", law_title="Real Decreto Legislativo 2/2015, ET.",
                  article_id="a38", kind="articulo", number="38", heading="Artículo 38. Vacaciones anuales.", path=[],
                  url="u", text="t", matched_text="t", chunk_part=0, short_name="ET")  # fmt: skip
    return Hit(**{**fields, **overrides})


def test_citations_name_the_short_name_and_a_missing_title_once() -> None:
    assert _hit().citation == "Art. 38 ET · Real Decreto Legislativo 2/2015, ET (BOE-A-2015-11430)"
    assert _hit(law_title="BOE-A-2015-11430").citation == "Art. 38 ET · BOE-A-2015-11430"
    earlier = _hit(version_date="1995-03-29", version_until="2012-02-12").citation
    assert earlier.endswith(", redacción vigente del 1995-03-29 al 2012-02-12")
    assert _hit().to_dict()["short_name"] == "ET"


@needs_corpora
def test_the_default_set_indexes_and_answers_with_short_names(tiny_model, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"  # the four laws of `--set basico`, as the fetcher would have cached them
    cache.mkdir()
    for boe_id, relative in [("BOE-A-1978-31229", "xml/BOE-A-1978-31229.texto.xml"),
                             ("BOE-A-2015-11430", "xml/BOE-A-2015-11430.xml"),
                             ("BOE-A-2015-10565", "pdf/BOE-A-2015-10565.pdf"),
                             ("BOE-A-1994-26003", "pdf/BOE-A-1994-26003.pdf")]:  # fmt: skip
        shutil.copy(CORPORA / relative, cache / f"{boe_id}.xml")
    monkeypatch.setenv("LEGALSEARCH_MODEL", str(tiny_model))
    result = runner.invoke(app, ["index", "--cache", str(cache), "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert "no SOURCE given: indexing the basic set" in result.stderr
    assert "note: embedding" in result.stderr and "chunks/s measured on" in result.stderr and "GPU" in result.stderr
    assert "4 laws" in result.stdout
    result = runner.invoke(app, ["ask", "art. 38 del Estatuto de los Trabajadores", "--json", "-k", "3"])
    hits = json.loads(result.stdout)
    assert hits[0]["match"] == "cita" and hits[0]["citation"].startswith("Art. 38 ET · Real Decreto Legislativo 2/2015")
    assert all(h["article_id"] != "an" for h in hits)
    result = runner.invoke(app, ["ask", "artículo 14 CE", "--json"])
    assert json.loads(result.stdout)[0]["citation"].startswith("Art. 14 CE · ")
    result = runner.invoke(app, ["index", "--set", "nada"])
    assert result.exit_code == 2 and "choose one of basico, codigos, justicio" in result.stderr


# --- dates, in every interface ---------------------------------------------------------------------------------

BAD_DAYS = ["2020-13-45", "2021-02-30", "2021-2-3", "ayer", "2021-02-29"]


@pytest.mark.parametrize("day", BAD_DAYS)
def test_impossible_dates_are_refused_everywhere(day, expiring_index, tmp_path) -> None:
    index = str(expiring_index.path)
    for args in (
        ["ask", "matrimonio", "--index", index, "--as-of", day],
        ["index", str(tmp_path), "--index", str(tmp_path / "new"), "--as-of", day],
        ["parse", str(tmp_path), "--as-of", day],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "YYYY-MM-DD" in result.stderr and day in result.stderr and result.stderr.count("\n") == 1
    with pytest.raises(QueryError, match="YYYY-MM-DD"):
        expiring_index.search("matrimonio", filters=Filters(as_of=day))
    with pytest.raises(QueryError, match="YYYY-MM-DD"):
        expiring_index.article("BOE-A-2099-77", "a1", as_of=day)
    with pytest.raises(UsageError, match="YYYY-MM-DD"):
        parse_bytes(EXPIRING, "x.xml", as_of=day)


@pytest.fixture(scope="module")
def api(expiring_index):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from legalsearch.server import create_app

    return TestClient(create_app(expiring_index))


@pytest.mark.parametrize("day", BAD_DAYS[:2])
def test_http_refuses_impossible_dates(api, day) -> None:
    response = api.post("/search", json={"query": "matrimonio", "filters": {"as_of": day}})
    assert response.status_code == 422 and "YYYY-MM-DD" in response.json()["detail"]
    response = api.get(f"/laws/BOE-A-2099-77/articles/a1?as_of={day}")
    assert response.status_code == 422 and "YYYY-MM-DD" in response.json()["detail"]


def test_http_unknown_keys_are_refused_never_ignored(api) -> None:
    response = api.post("/search", json={"query": "matrimonio", "filters": {"law": ["BOE-A-2099-77"]}})
    assert response.status_code == 422
    assert response.json() == {"detail": "body.filters.law: Extra inputs are not permitted"}
    response = api.post("/search", json={"query": "matrimonio", "top_k": 3})
    assert response.status_code == 422 and "top_k" in response.json()["detail"]


def test_http_bodies_over_the_limit_get_413_and_no_error_echoes_the_request(api) -> None:
    from legalsearch.server import MAX_BODY_BYTES

    huge = json.dumps({"queries": ["matrimonio " * 100] * 2000})
    assert len(huge) > MAX_BODY_BYTES
    response = api.post("/search/batch", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and len(response.content) < 200
    chunked = api.post("/search", content=iter([b'{"query": "', b"x" * MAX_BODY_BYTES, b'"}']))  # no length
    assert chunked.status_code == 413
    long = "secreto " * 2000  # under the body limit, over the query limit: refused without echoing it
    response = api.post("/search", json={"query": long})
    assert response.status_code == 422 and "secreto" not in response.text and len(response.content) < 300
    assert set(response.json()) == {"detail"} and isinstance(response.json()["detail"], str)
    response = api.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "not json" not in response.text


def test_http_docs_work_offline(api) -> None:
    page = api.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert "http://" not in page.text and "https://" not in page.text, "no CDN: every asset is served here"
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert api.get(f"/static-offline-docs/{asset}").status_code == 200
