"""The errors of the Spanish web pages: Spanish, in a lawyer's words (no `as_of`, no "is not in this index", no
YYYY-MM-DD), naming the form field, never repeating more than a short harmless prefix of what was sent, as a
page with the site's headers and a way on."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi")

from .test_http_api import client, plain, served  # noqa: F401  (the indexes and clients of the API tests)

ENGLISH = ("as_of", "is not in this index", "YYYY-MM-DD", "calendar day", "not in force", "unit", "Traceback")


def _alert(page) -> str:
    found = re.search(r'<p class="error" role="alert">(.*?)</p>', page.text, re.S)
    assert found, page.text[:500]
    return found[1]


@pytest.mark.parametrize(
    ("path", "params", "status", "line"),
    [
        ("/", {"q": "matrimonio", "fecha": "2021-02-30"}, 400, "«A fecha de» no es una fecha válida"),
        ("/", {"q": "matrimonio", "fecha": "ayer"}, 400, "«A fecha de» no es una fecha válida"),
        ("/", {"q": "matrimonio", "ley": "BOE-A-1-1"}, 400, "La ley elegida no está en este índice"),
        ("/", {"q": "matrimonio", "ley": "<script>alert(1)</script>"}, 400, "La ley elegida no está en este índice"),
        ("/", {"q": "matrimonio", "rango": "Decreto-ley"}, 400, "El rango elegido no está en este índice"),
        ("/", {"q": "x" * 4001}, 400, "La pregunta es demasiado larga"),
        ("/", {"q": "matrimonio", "k": "0"}, 400, "El número de resultados debe estar entre 1 y 50"),
        ("/", {"q": "matrimonio", "fecha": "<script>alert(1)</script>"}, 400, "«A fecha de» no es una fecha válida"),
        ("/ley/BOE-A-1-1", {}, 404, "La ley «BOE-A-1-1» no está en este índice"),
        ("/ley/<script>alert(1)<script>", {}, 404, "La ley «?script?alert(1)?script?» no está"),
        ("/ley/BOE-A-2099-77/a99", {}, 404, "Esta ley no tiene el artículo «a99»"),
        ("/ley/BOE-A-2099-77/<img src=x onerror=alert(1)>", {}, 404, "Esta ley no tiene el artículo «?img src"),
        ("/ley/BOE-A-2099-77/a1", {"fecha": "1990-01-01"}, 404, "no estaba en vigor el 1 de enero de 1990"),
        ("/ley/BOE-A-2099-77/a1", {"fecha": "2021-02-30"}, 400, "«A fecha de» no es una fecha válida"),
        ("/ley/BOE-A-2099-77/a2", {"desde": "2021-02-30", "hasta": "2022-01-01"}, 400, "«Desde» no es una fecha"),
        ("/ley/BOE-A-2099-77/a2", {"desde": "2001-01-01", "hasta": "2022-13-01"}, 400, "«Hasta» no es una fecha"),
        ("/ley/BOE-A-2099-77/a2", {"desde": "1990-01-01", "hasta": "2006-01-01"}, 400, "no estaba en vigor el 1 de"),
        ("/cambios", {"desde": "2021-13-01"}, 400, "«Desde» no es una fecha válida"),
        ("/ley/BOE-A-2099-77/a1/<script>", {}, 404, "Esta página no existe"),
    ],
)
def test_page_errors_are_spanish_and_name_the_field(client, path, params, status, line) -> None:  # noqa: F811
    page = client.get(path, params=params)
    assert page.status_code == status and page.headers["content-type"].startswith("text/html")
    alert = _alert(page)
    assert line in alert, alert
    assert not any(word in alert for word in ENGLISH), alert
    assert "<script" not in page.text and "<img src=x" not in page.text and "x" * 100 not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_a_missing_unit_page_leads_to_the_law(client) -> None:  # noqa: F811
    page = client.get("/ley/BOE-A-2099-77/a99")
    assert 'href="/ley/BOE-A-2099-77">Ver el índice de la ley</a>' in page.text
    earlier = client.get("/ley/BOE-A-2099-77/a1", params={"fecha": "1990-01-01"})
    assert 'href="/ley/BOE-A-2099-77/a1">Ver la redacción vigente</a>' in earlier.text


def test_pages_that_work_show_no_error(client) -> None:  # noqa: F811
    assert 'role="alert"' not in client.get("/", params={"q": "matrimonio", "ley": "BOE-A-2099-77"}).text
    diff = client.get("/ley/BOE-A-2099-77/a2", params={"desde": "2001-01-01", "hasta": "2006-01-01"})
    assert diff.status_code == 200 and "<ins>" in diff.text
    assert client.get("/cambios", params={"desde": "2001-01-01"}).status_code == 200


def test_comparing_wordings_on_an_index_without_them_says_so(plain) -> None:  # noqa: F811
    page = plain.get("/ley/BOE-A-2099-1/a1", params={"desde": "2001-01-01", "hasta": "2006-01-01"})
    assert page.status_code == 400
    assert _alert(page) == (
        "Este índice solo guarda la redacción vigente de cada artículo: no puede comparar redacciones."
    )


def test_a_question_of_only_spaces_or_control_characters_is_no_question(client) -> None:  # noqa: F811
    """A question of three spaces said «Sin resultados: ningún texto responde»; a NUL searched and listed 10
    articles and was written into the page. Both are the empty form."""
    for q in ("   ", "\x00", "\x00\x1b \x07\x9b"):
        page = client.get("/", params={"q": q})
        assert page.status_code == 200 and 'aria-label="Resultados"' not in page.text, repr(q)
        assert "Sin resultados" not in page.text and 'role="alert"' not in page.text
        assert not any(c in page.text for c in "\x00\x1b\x07\x9b"), "no control character in the page"
    found = client.get("/", params={"q": "matri\x00monio\x1b", "ley": "BOE-A-2099-77"})
    assert found.status_code == 200 and 'class="hit' in found.text and "\x00" not in found.text


@pytest.mark.parametrize("pagina", ["0", "11", "dos"])
def test_a_results_page_out_of_range_says_which(client, pagina) -> None:  # noqa: F811
    page = client.get("/", params={"q": "matrimonio", "pagina": pagina})
    assert page.status_code == 400 and _alert(page) == "La página de resultados debe estar entre 1 y 10."


def test_the_law_path_without_a_law_is_a_spanish_page(client) -> None:  # noqa: F811
    page = client.get("/ley")
    assert page.status_code == 404 and "Esta página no existe" in _alert(page)


def test_a_date_written_as_the_error_line_suggests_is_taken(client) -> None:  # noqa: F811
    """The date error says "por ejemplo, 27/09/2011", and a date typed so (a browser without a date picker, an
    edited link) was refused with that same line. Day/month/year is a date; 31/02/2021 is still none."""
    iso = client.get("/", params={"q": "matrimonio", "ley": "BOE-A-2099-77", "fecha": "2001-01-01"})
    spanish = client.get("/", params={"q": "matrimonio", "ley": "BOE-A-2099-77", "fecha": "1/01/2001"})
    assert spanish.status_code == 200 and 'role="alert"' not in spanish.text
    assert spanish.text.count('class="hit') == iso.text.count('class="hit') > 1
    diff = client.get("/ley/BOE-A-2099-77/a2", params={"desde": "01/01/2001", "hasta": "01-01-2006"})
    assert diff.status_code == 200 and "<ins>" in diff.text
    assert client.get("/cambios", params={"desde": "01/01/2001"}).status_code == 200
    wrong = client.get("/", params={"q": "matrimonio", "fecha": "31/02/2021"})
    assert wrong.status_code == 400 and "«A fecha de» no es una fecha válida" in _alert(wrong)
