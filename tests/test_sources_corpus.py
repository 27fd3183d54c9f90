"""Parsing truth over the real BOE files of corpora/sample: counts, ids, cross-format agreement.

The same truths for the laws only the larger corpus holds (Código Civil, Código Penal, LEC, LCSP, IVA, Ley 40/2015)
are checked by `python bench/corpus_truths.py` over ../shared/corpora.
"""

from __future__ import annotations

import re

import pytest

from legalsearch.sources.structure import fold

from .conftest import corpus_law, manifest, needs_corpora

pytestmark = needs_corpora

# Not whole laws, or laws with no numbered articles: checked for ids and parsing only.
NO_NUMBERED_ARTICLES = {
    "xml/BOE-A-1835-2348.xml",  # a Real Orden of 1835: dispositive text in rules, no articles
    "xml/BOE-A-1992-28740.bloque-a90.xml",  # one block (article 90) of the IVA law
    "html/BOE-A-2011-208.html",  # a Resolución in "Primero…", "Segundo…" apartados
}
# Each law's own count of numbered articles (plain numbers, `bis` and ranges of repealed ones aside)
NUMBERED_ARTICLES = {
    "xml/BOE-A-1978-31229.xml": 169,
    "xml/BOE-A-1978-31229.texto.xml": 169,
    "html/BOE-A-1978-31229.html": 169,
    "pdf/BOE-A-1978-31229.pdf": 169,
    "pdf/BOE-A-2015-11430.pdf": 92,  # Estatuto de los Trabajadores, consolidated
    "xml/BOE-A-2015-11430.xml": 92,  # … as published in 2015
    "pdf/BOE-A-2015-10565.pdf": 133,  # Ley 39/2015
    "pdf/BOE-A-1994-26003.pdf": 40,  # Ley de Arrendamientos Urbanos
    "pdf/BOE-A-1997-25336.pdf": 29,  # Ley 50/1997 del Gobierno
    "html-derived/BOE-A-1995-24292.html": 54,  # Ley de Prevención de Riesgos Laborales
    "md/BOE-A-2022-11589.md": 54,
}
FILES = [row["file"] for row in manifest()]


def numbered(law) -> set[int]:
    """Plain article numbers of a law, ranges of repealed articles ("Artículos 127 a 130") expanded."""
    numbers: set[int] = set()
    for article in law.articles:
        if article.kind != "articulo" or not article.number:
            continue
        if m := re.fullmatch(r"(\d+) a (\d+)", article.number):
            numbers.update(range(int(m[1]), int(m[2]) + 1))
        elif article.number.isdigit():
            numbers.add(int(article.number))
    return numbers


def normalised(text: str) -> str:
    text = re.sub(r"[«»“”\"]", '"', text).replace("’", "'")
    return " ".join(text.split())


@pytest.mark.parametrize("relative", FILES)
def test_every_corpus_file_parses_into_units_with_unique_ids(relative: str) -> None:
    law = corpus_law(relative)
    assert law.boe_id == next(r["boe_id"] for r in manifest() if r["file"] == relative)
    ids = [a.article_id for a in law.articles]
    assert len(ids) == len(set(ids)), "duplicate unit ids"
    assert all(a.text.strip() or a.kind == "articulo" for a in law.articles)
    for article in law.articles:
        assert article.url == f"https://www.boe.es/buscar/act.php?id={law.boe_id}#{article.anchor}"
        assert "LEGISLACIÓN CONSOLIDADA" not in article.text
        assert not re.search(r"^Página \d+$", article.text, re.M)
    if relative not in NO_NUMBERED_ARTICLES:
        numbers = numbered(law)
        assert numbers, "no numbered articles found"
        assert numbers == set(range(1, max(numbers) + 1)), f"gaps: {sorted(set(range(1, max(numbers))) - numbers)}"


@pytest.mark.parametrize(("relative", "expected"), sorted(NUMBERED_ARTICLES.items()))
def test_numbered_articles_match_the_laws_own_count(relative: str, expected: int) -> None:
    assert max(numbered(corpus_law(relative))) == expected


def test_constitution_same_ids_and_text_in_html_pdf_and_api_xml() -> None:
    html = corpus_law("html/BOE-A-1978-31229.html")
    pdf = corpus_law("pdf/BOE-A-1978-31229.pdf")
    api = corpus_law("xml/BOE-A-1978-31229.texto.xml", as_of="2024-02-17")  # the date of the other two
    for other in (pdf, api):
        assert [a.article_id for a in other.articles] == [a.article_id for a in html.articles]
        for mine, theirs in zip(html.articles, other.articles, strict=True):
            if mine.kind == "preambulo":
                continue
            assert normalised(mine.text) == normalised(theirs.text), mine.article_id
            assert fold(mine.heading).rstrip(".") == fold(theirs.heading).rstrip("."), mine.article_id
            assert mine.path == theirs.path, mine.article_id


def test_constitution_original_text_matches_consolidated_where_never_amended() -> None:
    diario = corpus_law("xml/BOE-A-1978-31229.xml")  # as published in 1978
    html = corpus_law("html/BOE-A-1978-31229.html")
    assert [a.article_id for a in diario.articles] == [a.article_id for a in html.articles]
    unamended = [a for a in html.articles if a.kind == "articulo" and not a.notes]
    assert len(unamended) > 150
    for article in unamended:
        assert normalised(diario.article(article.article_id).text) == normalised(article.text), article.article_id
    amended = html.article("a135")  # reformed in 2011
    assert normalised(diario.article("a135").text) != normalised(amended.text)


def test_api_xml_takes_latest_version_by_default_and_as_of_picks_the_one_in_force() -> None:
    latest = corpus_law("xml/BOE-A-1978-31229.texto.xml").article("a69")
    assert latest.version_norma == "BOE-A-2026-10881" and latest.version_date == "2026-05-20"
    assert "Ibiza" in latest.text and "Formentera" in latest.text
    in_2024 = corpus_law("xml/BOE-A-1978-31229.texto.xml", as_of="2024-02-17").article("a69")
    assert in_2024.version_date == "1978-12-29"
    assert "Ibiza-Formentera" in in_2024.text
    original = corpus_law("xml/BOE-A-1978-31229.texto.xml", as_of="1980-01-01").article("a13")
    assert "derecho de sufragio activo en las elecciones municipales" in original.text
    assert "activo y pasivo" in corpus_law("xml/BOE-A-1978-31229.texto.xml").article("a13").text


def test_api_xml_history_holds_every_earlier_wording_with_the_dates_it_was_in_force() -> None:
    law = corpus_law("xml/BOE-A-1978-31229.texto.xml", history=True)
    in_force = corpus_law("xml/BOE-A-1978-31229.texto.xml")
    assert [a.article_id for a in law.articles] == [a.article_id for a in in_force.articles]
    spans = {a.article_id: (a.version_date, a.version_until) for a in law.history}
    assert spans == {  # the four articles the 1992, 2011, 2024 and 2026 reforms changed
        "a13": ("1978-12-29", "1992-08-28"),
        "a49": ("1978-12-29", "2024-02-17"),
        "a69": ("1978-12-29", "2026-05-20"),
        "a135": ("1978-12-29", "2011-09-27"),
    }
    for earlier in law.history:
        current = law.article(earlier.article_id)
        assert current.version_until is None and current.version_date == earlier.version_until
        assert (earlier.kind, earlier.path, earlier.anchor) == (current.kind, current.path, current.anchor)
        then = corpus_law("xml/BOE-A-1978-31229.texto.xml", as_of=earlier.version_date).article(earlier.article_id)
        assert earlier.text == then.text != current.text
        assert earlier.url == f"https://www.boe.es/buscar/act.php?id=BOE-A-1978-31229&tn=1&p=19781229#{earlier.anchor}"
    in_2000 = corpus_law("xml/BOE-A-1978-31229.texto.xml", as_of="2000-01-01", history=True)
    assert [(a.article_id, a.version_until) for a in in_2000.history] == [("a13", "1992-08-28")]
    assert in_2000.article("a135").version_until is None, "as read in 2000, the 1978 wording is the one in force"


def test_structure_path_and_kinds() -> None:
    ce = corpus_law("html/BOE-A-1978-31229.html")
    a15 = ce.article("a15")
    assert a15.path == (
        "TÍTULO I. De los derechos y deberes fundamentales",
        "CAPÍTULO SEGUNDO. Derechos y libertades",
        "Sección 1.ª De los derechos fundamentales y de las libertades públicas",
    )
    assert ce.article("dt9").kind == "disposicion_transitoria"
    assert ce.article("dd").kind == "disposicion_derogatoria"
    assert ce.articles[0].kind == "preambulo"
    et = corpus_law("pdf/BOE-A-2015-11430.pdf")
    assert et.article("a38").path == (
        "TÍTULO I. De la relación individual de trabajo",
        "CAPÍTULO II. Contenido del contrato de trabajo",
        "Sección 5.ª Tiempo de trabajo",
    )
    assert "treinta días naturales" in et.article("a38").text


def test_editorial_notes_are_kept_apart_from_the_text() -> None:
    a13 = corpus_law("html/BOE-A-1978-31229.html").article("a13")
    assert any("Se modifica el apartado 2" in note for note in a13.notes)
    assert "Se modifica" not in a13.text
    a129 = corpus_law("pdf/BOE-A-2015-10565.pdf").article("a129")
    assert any(note.startswith("Téngase en cuenta") for note in a129.notes)
    assert "Téngase en cuenta" not in a129.text


def test_quoted_articles_of_amended_laws_do_not_start_units() -> None:
    law = corpus_law("md/BOE-A-2022-11589.md")
    assert "a11bis" not in {a.article_id for a in law.articles}
    assert "Artículo 11 bis" in law.article("df2").text


def test_unusual_separators_and_single_articles() -> None:
    law = corpus_law("xml/BOE-A-2023-16215.xml")  # "Artículo único.\u2003Aprobación …"
    au = law.article("au")
    assert au.kind == "articulo" and au.number == "único"
    assert au.heading == "Artículo único. Aprobación del Reglamento del Registro de la Propiedad Intelectual."
    # the reglamento's articles sit inside the annexed text, which is their path, not a unit
    assert law.article("a1").path == (
        "REGLAMENTO DEL REGISTRO DE LA PROPIEDAD INTELECTUAL",
        "CAPÍTULO I. Objeto, funciones y estructura del Registro de la Propiedad Intelectual",
    )
    assert "Dado en Madrid" not in law.article("df3").text


def test_pdf_skips_index_and_reads_metadata() -> None:
    pdf = corpus_law("pdf/BOE-A-1978-31229.pdf")
    assert pdf.fecha_actualizacion == "2024-02-17"
    assert pdf.title == "Constitución Española."
    preambulo = pdf.articles[0]
    assert preambulo.kind == "preambulo" and "ÍNDICE" not in preambulo.text and "....." not in preambulo.text
    assert pdf.article("a4").text.startswith("1. La bandera de España está formada por tres franjas")


def test_metadata_from_xml_and_html() -> None:
    et = corpus_law("xml/BOE-A-2015-11430.xml")
    assert et.rango == "Real Decreto Legislativo" and et.departamento == "Ministerio de Empleo y Seguridad Social"
    assert et.fecha_publicacion == "2015-10-24" and et.eli_url == "https://www.boe.es/eli/es/rdlg/2015/10/23/2"
    assert et.status == "vigente"
    html = corpus_law("html/BOE-A-1978-31229.html")
    assert html.departamento == "Cortes Generales" and html.fecha_actualizacion == "2024-02-17"
    assert html.fecha_publicacion == "1978-12-29"
