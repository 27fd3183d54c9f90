"""How the web pages present the law (legalsearch/web/present.py) and how two wordings are compared, without a
browser: the Índice in the law's own order, a unit's neighbours, short names for the law list, Spanish dates, the
amending norm's name, the snippet of a hit (the apartado that matched, every cut marked) and a word diff that
marks a change as a reader would."""

from __future__ import annotations

from legalsearch.web.present import (
    CUT,
    article_for,
    contents,
    heading_title,
    law_name,
    neighbours,
    norm_names,
    snippet,
    spanish_date,
    unit_number,
)
from legalsearch.wordings import word_diff


def _unit(article_id: str, *path: str) -> dict:
    return {"article_id": article_id, "heading": article_id, "path": list(path)}


def _outline(entries: list[dict]) -> list:
    return [e["unit"]["article_id"] if "unit" in e else (e["title"], _outline(e["entries"])) for e in entries]


def test_the_index_keeps_the_laws_order() -> None:
    units = [
        _unit("preambulo"),
        _unit("a1", "TÍTULO PRELIMINAR"),
        _unit("a2", "TÍTULO I", "CAPÍTULO I"),
        _unit("a3", "TÍTULO I", "CAPÍTULO I"),
        _unit("a4", "TÍTULO I", "CAPÍTULO II"),
        _unit("a5", "TÍTULO I"),
        _unit("da1"),
        _unit("df1"),
    ]
    assert _outline(contents(units)) == [
        "preambulo",
        ("TÍTULO PRELIMINAR", ["a1"]),
        ("TÍTULO I", [("CAPÍTULO I", ["a2", "a3"]), ("CAPÍTULO II", ["a4"]), "a5"]),
        "da1",
        "df1",
    ]
    reglamento = [_unit("au"), _unit("a1", "ANEXO", "TÍTULO I"), _unit("a2", "ANEXO", "TÍTULO II")]
    assert _outline(contents(reglamento)) == ["au", ("ANEXO", [("TÍTULO I", ["a1"]), ("TÍTULO II", ["a2"])])]


def test_neighbours_in_the_laws_order() -> None:
    units = [_unit("preambulo"), _unit("a1", "T"), _unit("a2", "T"), _unit("da1")]
    assert [u and u["article_id"] for u in neighbours(units, "a2")] == ["a1", "da1"]
    assert [u and u["article_id"] for u in neighbours(units, "preambulo")] == [None, "a1"]
    assert neighbours(units, "a99") == (None, None)


def test_short_names_for_the_law_list() -> None:
    lpac = {"boe_id": "BOE-A-2015-10565", "title": "Ley 39/2015, de 1 de octubre, del Procedimiento Administrativo "
            "Común de las Administraciones Públicas."}  # fmt: skip
    assert law_name(lpac) == "LPAC · Ley 39/2015"
    assert law_name({"boe_id": "BOE-A-1978-31229", "title": "BOE-A-1978-31229"}) == "CE"
    long = {"boe_id": "BOE-A-2005-13020", "title": "Resolución de 28 de julio de 2005, de la Subsecretaría, por la "
            "que se da publicidad al Acuerdo del Consejo de Ministros."}  # fmt: skip
    assert law_name(long) == "Resolución de 28 de julio de 2005, de la…" and len(law_name(long)) <= 48
    assert law_name({"boe_id": "BOE-A-2099-1", "title": ""}) == "BOE-A-2099-1"


def test_dates_and_names_as_a_lawyer_writes_them() -> None:
    assert (
        spanish_date("2024-03-05") == "5 de marzo de 2024" and spanish_date("1978-12-29") == "29 de diciembre de 1978"
    )
    assert spanish_date(None) == "" and spanish_date("hoy") == "hoy"
    assert heading_title("Artículo 9. Plazo mínimo.") == "Plazo mínimo." and heading_title("Artículo 135") == ""
    assert (article_for("Ley 2/2011"), article_for("Real Decreto 1/2020"), article_for("BOE-A-2011-1")) == (
        "la ",
        "el ",
        "",
    )


def test_the_amending_norm_by_its_title_or_the_boe_analysis() -> None:
    ce = {
        "boe_id": "BOE-A-1978-31229",
        "referencias": {
            "posteriores": [
                {"id_norma": "BOE-A-2011-15210", "relacion": "SE MODIFICA",
                 "texto": "el art. 135, por Reforma de 27 de septiembre de 2011"},
                {"id_norma": "BOE-A-2024-3099", "relacion": "SE MODIFICA", "texto": "el art. 49"},
            ]
        },
    }  # fmt: skip
    assert norm_names(ce, {}) == {"BOE-A-2011-15210": "Reforma de 27 de septiembre de 2011"}
    titles = {"BOE-A-2024-3099": "Reforma del artículo 49 de la Constitución Española, de 15 de febrero de 2024."}
    assert norm_names(ce, titles)["BOE-A-2024-3099"].endswith("de 15 de febrero de 2024"), "the index's title"
    assert norm_names(None, {}) == {}


LAU_9 = (
    "1. La duración del arrendamiento será libremente pactada por las partes. Si esta fuera inferior a cinco años, "
    "o inferior a siete años si el arrendador fuese persona jurídica, llegado el día del vencimiento del contrato, "
    "este se prorrogará obligatoriamente por plazos anuales hasta que el arrendamiento alcance una duración mínima "
    "de cinco años, o de siete años si el arrendador fuese persona jurídica.\n"
    "Se exceptúan de esta obligación de prórroga los casos en que el arrendatario manifieste su voluntad.\n"
    "2. Se entenderán celebrados por un año los arrendamientos para los que no se haya estipulado plazo.\n"
    "3. No procederá la prórroga obligatoria del contrato cuando, al tiempo de su celebración, se haga constar:\n"
    "a) La necesidad del arrendador de ocupar la vivienda.\n"
    "b) La necesidad de sus familiares en primer grado de consanguinidad."
)


def test_the_snippet_is_the_apartado_that_matched_with_every_cut_marked() -> None:
    header = "Ley 29/1994 › TÍTULO II › Artículo 9. Plazo mínimo."
    first_sentence = LAU_9.split(". Si esta")[0] + "."  # a chunk cut at a sentence: the minimums are not in it
    lines = snippet(LAU_9, f"{header}\n{first_sentence}", "duración mínima del arrendamiento")
    assert lines[0].startswith("1. La duración") and "siete años" in lines[0] and "cinco años" in lines[0]
    assert lines[-1] == CUT, "the apartados after it are left out, and marked"
    item = snippet(LAU_9, f"{header}\n{LAU_9}", "familiares consanguinidad")
    assert item == [CUT, LAU_9.split("\n")[3], CUT, LAU_9.split("\n")[5]], "an item of a list comes with its lead-in"
    whole = snippet("Artículo breve sin apartados.", "H\nArtículo breve sin apartados.", "breve")
    assert whole == ["Artículo breve sin apartados."], "nothing cut, nothing marked"


def test_a_long_apartado_is_cut_around_the_words_matched_and_marked_at_both_ends() -> None:
    long = " ".join(f"palabra{i}" for i in range(200)) + " prescripción " + " ".join(f"otra{i}" for i in range(200))
    [line] = snippet(long, f"H\n{long}", "prescripción")
    assert line.startswith(CUT) and line.endswith(CUT) and "prescripción" in line and len(line) <= 702
    assert line[1:-1] in long and not line[1:].startswith(" "), "cut at whole words"


def test_the_word_diff_marks_a_change_as_a_reader_would() -> None:
    old = "1. El Gobierno habrá de estar autorizado por ley para emitir Deuda Pública o contraer crédito."
    new = "1. El Estado y las Comunidades Autónomas habrán de estar autorizados por ley para emitir deuda pública."
    spans = word_diff(old, new)
    assert "".join(s.old for s in spans) == old and "".join(s.new for s in spans) == new
    changed = [(s.old.strip(), s.new.strip()) for s in spans if s.op != "equal"]
    assert changed[0] == ("Gobierno habrá", "Estado y las Comunidades Autónomas habrán"), "no stray 'y'/'las' match"
    assert ("autorizado", "autorizados") in changed
    stray = word_diff("uno dos tres cuatro cinco seis", "siete ocho tres nueve diez once")
    assert [s.op for s in stray] == ["replace"], "one unchanged word between two changes is part of the change"


def test_a_heading_splits_into_the_units_number_and_its_title() -> None:
    """Older laws write "Art. 2.º" (the BOE's 1989 diario XML): the previous/next links showed "← Art" and a hit
    showed "2.º" as the article's title."""
    cases = {
        "Artículo 9. Plazo mínimo.": ("Artículo 9", "Plazo mínimo."),
        "Artículo 135": ("Artículo 135", ""),
        "Art. 2.º": ("Art. 2.º", ""),
        "Artículo 1.º": ("Artículo 1.º", ""),
        "Art. 5.º Protección de las especies.": ("Art. 5.º", "Protección de las especies."),
        "Disposición transitoria octava.": ("Disposición transitoria octava", ""),
        "Disposición adicional 1.ª Registro.": ("Disposición adicional 1.ª", "Registro."),
        "ANEXO I. Relación de especies": ("ANEXO I", "Relación de especies"),
        "Texto": ("Texto", ""),
    }
    for heading, (number, title) in cases.items():
        assert (unit_number(heading), heading_title(heading)) == (number, title), heading
