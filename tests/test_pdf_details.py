"""What a consolidated PDF's first page says about its law (departamento, rango, dates, BOE reference, status),
read as the page says it and left empty where it does not; and the LPAC's and LAU's preámbulo kept whole when a
wrapped line of it looks like a heading ("disposiciones finales.")."""

from __future__ import annotations

import pytest

from legalsearch.sources.pdf import disposition_date, rango_of, read_first_page

from .conftest import corpus_law, needs_corpora

LPAC_PAGE = (  # as pypdf reads it: a soft-wrapped line ends with a space
    "Ley 39/2015, de 1 de octubre, del Procedimiento Administrativo \nComún de las Administraciones Públicas.\n"
    "Jefatura del Estado\n«BOE» núm. 236, de 02 de octubre de 2015\nReferencia: BOE-A-2015-10565\nÍNDICE\n"
)
LPAC_TITLE = "Ley 39/2015, de 1 de octubre, del Procedimiento Administrativo Común de las Administraciones Públicas."


def test_the_departamento_is_the_line_between_the_title_and_the_publication() -> None:
    head = read_first_page(LPAC_PAGE, LPAC_TITLE)
    assert head.departamento == "Jefatura del Estado", "not the title's second line"
    assert (head.reference, head.published) == ("BOE-A-2015-10565", "02 de octubre de 2015")
    untitled = read_first_page(LPAC_PAGE)  # a PDF without /Title: the lines above the departamento are the title
    assert untitled.title == LPAC_TITLE and untitled.departamento == "Jefatura del Estado"


def test_a_page_in_another_layout_gives_no_departamento_rather_than_a_wrong_one() -> None:
    assert read_first_page(LPAC_PAGE, "Ley 40/2015, de 1 de octubre, de Régimen Jurídico.").departamento is None
    other = read_first_page("Ley 39/2015, de 1 de octubre, del Procedimiento\nJefatura del Estado\nÍNDICE\n")
    assert (other.departamento, other.published, other.reference) == (None, None, None)


@pytest.mark.parametrize(
    ("title", "rango", "day"),
    [
        ("Constitución Española.", "Constitución", None),
        ("Ley 29/1994, de 24 de noviembre, de Arrendamientos Urbanos.", "Ley", "1994-11-24"),
        (
            "Ley Orgánica 3/2020, de 29 de diciembre, por la que se modifica la Ley Orgánica 2/2006, de 3 de mayo, "
            "de Educación.",
            "Ley Orgánica",
            "2020-12-29",
        ),
        (
            "Real Decreto Legislativo 2/2015, de 23 de octubre, por el que se aprueba el texto refundido de la Ley "
            "del Estatuto de los Trabajadores.",
            "Real Decreto Legislativo",
            "2015-10-23",
        ),
        ("Real Decreto-ley 20/2012, de 13 de julio, de medidas.", "Real Decreto-ley", "2012-07-13"),
        ("Real Decreto de 24 de julio de 1889 por el que se publica el Código Civil.", "Real Decreto", "1889-07-24"),
        (
            "Resolución de 28 de julio de 2005, de la Subsecretaría, por la que se da publicidad",
            "Resolución",
            "2005-07-28",
        ),
        ("Real Orden de 30 de octubre de 1835 acerca del lugar", "Orden", "1835-10-30"),
        ("Leyes de Indias, recopilación", None, None),
    ],
)
def test_rango_and_date_of_a_title(title: str, rango: str | None, day: str | None) -> None:
    assert rango_of(title) == rango
    assert disposition_date(title) == day


@needs_corpora
@pytest.mark.parametrize(
    ("file", "departamento", "rango", "dates"),
    [
        (
            "pdf/BOE-A-2015-11430.pdf",
            "Ministerio de Empleo y Seguridad Social",
            "Real Decreto Legislativo",
            ("2015-10-23", "2015-10-24", "2024-08-02"),
        ),
        ("pdf/BOE-A-2015-10565.pdf", "Jefatura del Estado", "Ley", ("2015-10-01", "2015-10-02", "2024-11-06")),
        ("pdf/BOE-A-1994-26003.pdf", "Jefatura del Estado", "Ley", ("1994-11-24", "1994-11-25", "2019-03-05")),
        ("pdf/BOE-A-1978-31229.pdf", "Cortes Generales", "Constitución", (None, "1978-12-29", "2024-02-17")),
    ],
)
def test_real_pdfs_details(file: str, departamento: str, rango: str, dates: tuple) -> None:
    law = corpus_law(file)
    assert (law.departamento, law.rango) == (departamento, rango)
    assert (law.fecha_disposicion, law.fecha_publicacion, law.fecha_actualizacion) == dates
    assert law.status == "vigente", "a consolidated text without the BOE's 'Norma derogada' note"
    assert law.boe_id == file.split("/")[1].removesuffix(".pdf")


@needs_corpora
@pytest.mark.parametrize("file", ["pdf/BOE-A-2015-10565.pdf", "pdf/BOE-A-1994-26003.pdf"])
def test_a_wrapped_line_that_reads_like_a_heading_stays_in_its_text(file: str) -> None:
    """LPAC: "… una disposición derogatoria y siete / disposiciones finales." once opened a unit "Disposición
    final" holding sections V on of the preámbulo; LAU: "… de la / disposición transitoria." a "dt"."""
    law = corpus_law(file)
    units = [a.article_id for a in law.articles]
    assert units[:2] == ["preambulo", "a1"]
    assert "df" not in units and "dt" not in units
    preambulo = law.article("preambulo").text
    if file.endswith("10565.pdf"):
        assert "siete disposiciones finales." in preambulo
        assert "El título preliminar, de disposiciones generales, aborda" in preambulo, "section V is in it"
        assert units.count("df1") == 1 and law.article("df1").heading.startswith("Disposición final primera")


def test_the_boe_status_note_makes_the_law_repealed_and_leaves_the_text() -> None:
    from legalsearch.sources.pdf import _body_lines, _status

    page = (
        "TEXTO CONSOLIDADO\nÚltima modificación: 02 de octubre de 2015\nNorma derogada, con efectos de 2 de octubre "
        "de 2016, por la disposición derogatoria única.2.a) de la \nLey 39/2015, de 1 de octubre. Ref. "
        "BOE-A-2015-10565.\nJUAN CARLOS I\nREY DE ESPAÑA"
    )
    body = _body_lines([page])
    assert _status(body) == "derogada" and body.lines == ["JUAN CARLOS I", "REY DE ESPAÑA"]
    assert body.banner.endswith("Ref. BOE-A-2015-10565.")
    partly = _body_lines([page.replace("Norma derogada, con", "Norma derogada, excepto la disposición final, con")])
    assert _status(partly) == "desconocido", "partly repealed: no status rather than a wrong one"
    assert _status(_body_lines(["TEXTO CONSOLIDADO\nÚltima modificación: 5 de marzo de 2019\nJUAN CARLOS I"])) == (
        "vigente"
    )
    assert _status(_body_lines(["Ley 1/2099, de 1 de enero.\nArtículo 1. Objeto."])) == "desconocido"


def test_without_a_title_in_the_metadata_a_wrapped_title_line_is_no_departamento() -> None:
    """A PDF without /Title whose first page has no departamento line: the title's wrapped second line ("Común de
    las Administraciones Públicas.") was taken for the departamento. Show none rather than a wrong one."""
    page = LPAC_PAGE.replace("Jefatura del Estado\n", "")
    head = read_first_page(page)
    assert head.departamento is None and head.title == LPAC_TITLE
    assert head.reference == "BOE-A-2015-10565"
    one_line = "Constitución Española.\n«BOE» núm. 311, de 29 de diciembre de 1978\nReferencia: BOE-A-1978-31229\n"
    assert read_first_page(one_line).departamento is None
    period = "Ley 1/2099, de 2 de enero, de pruebas.\nDe las pruebas.\n«BOE» núm. 1, de 3 de enero de 2099\n"
    assert read_first_page(period).departamento is None, "a departamento does not end with a period"
