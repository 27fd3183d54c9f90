"""Format detection, headings, and bad input: every bad file is one ParseError naming it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfWriter

from legalsearch.errors import ParseError
from legalsearch.sources import detect, parse_bytes, parse_file, resolve
from legalsearch.sources.structure import ordinal_value, parse_heading

TEXT_LAW = """Ley 1/2099, de prueba. BOE-A-2099-1

PREÁMBULO
Esta ley se escribe para las pruebas.

TÍTULO I
Disposiciones generales
Artículo 1. Objeto.
1. Esta ley regula las pruebas.
2. También regula los «ejemplos».
Artículo 1 bis. Ámbito.
Se aplica a todas las pruebas.
Disposición adicional primera. Plazo.
El plazo es de un mes.
Disposición final única. Entrada en vigor.
Esta ley entra en vigor hoy.
"""


@pytest.mark.parametrize(
    ("word", "value"),
    [("primera", 1), ("única", 0), ("décima", 10), ("decimoctava", 18), ("vigésima tercera", 23),
     ("vigesimoprimera", 21), ("quincuagésima tercera", 53), ("centésima", 100), ("hola", None)],
)  # fmt: skip
def test_spanish_ordinals(word: str, value: int | None) -> None:
    assert ordinal_value(word) == value


@pytest.mark.parametrize(
    ("heading", "article_id", "number"),
    [
        ("Artículo 14. Igualdad.", "a14", "14"),
        ("Artículo 14 bis. X.", "a14bis", "14 bis"),
        ("Artículo único.\u2003Aprobación.", "au", "único"),
        ("Artículo\u00a020.\u2003Solicitudes.", "a20", "20"),
        ("Art. 2.º", "a2", "2"),
        ("Artículo 163 quinquiesdecies. X", "a163quinquiesdecies", "163 quinquiesdecies"),
        ("Artículo 140 cuarter. Deducciones.", "a140quater", "140 quater"),
        ("Artículo 283 bis a). Exhibición.", "a283bisa", "283 bis a)"),
        ("Artículos 127 a 130. (Derogados)", "a127-a130", "127 a 130"),
        ("Disposición adicional vigésima tercera. X.", "da23", "vigésima tercera"),
        ("Disposición transitoria única.", "dtu", "única"),
        ("Disposición derogatoria.", "dd", None),
    ],
)
def test_heading_ids_follow_the_boe_anchors(heading: str, article_id: str, number: str | None) -> None:
    from legalsearch.sources.structure import clean_text

    info = parse_heading(clean_text(heading))
    assert info is not None
    assert (info.article_id, info.number) == (article_id, number)


def test_plain_text_law() -> None:
    law = parse_bytes(TEXT_LAW.encode(), "prueba.txt")
    assert law.boe_id == "BOE-A-2099-1"
    assert [a.article_id for a in law.articles] == ["preambulo", "a1", "a1bis", "da1", "dfu"]
    a1 = law.article("a1")
    assert a1.path == ("TÍTULO I. Disposiciones generales",)
    assert a1.text == "1. Esta ley regula las pruebas.\n2. También regula los «ejemplos»."
    assert law.article("da1").kind == "disposicion_adicional"


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b"%PDF-1.7\n...", "pdf"),
        (b'<?xml version="1.0"?><response><data/></response>', "boe-api-xml"),
        (b'<?xml version="1.0"?>\n<documento><metadatos/></documento>', "boe-diario-xml"),
        (b"<!DOCTYPE html><html><body></body></html>", "boe-html"),
        (b"---\ntitle: x\n---\n# Ley\n", "markdown"),
        ("Artículo 1. Hola".encode(), "text"),
        (b"\x00\x01\x02binary", None),
        ("texto en latin-1: año".encode("latin-1"), None),
    ],
)
def test_format_is_detected_from_content(data: bytes, fmt: str | None) -> None:
    assert detect(data) == fmt


def _blank_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.xml", b"", "empty file"),
        ("blank.txt", b"  \n\n ", "empty file"),
        ("truncated.xml", b'<?xml version="1.0"?><response><data><texto><bloque id="a1"', "malformed or truncated XML"),
        ("malformed.xml", b"<?xml version='1.0'?><documento><texto></documento>", "malformed or truncated XML"),
        ("BOE-A-2099-2.html", b"<!DOCTYPE html><html><body><p>Hola</p></body></html>", "no articles found"),
        ("BOE-A-2099-1.pdf", None, "no text layer"),
        ("garbage.bin", bytes(range(256)) * 4, "not a BOE XML, HTML, PDF"),
        ("BOE-A-2099-1.txt", "Artículo 1. Año".encode("latin-1"), "not UTF-8 text"),
        ("notutf8.txt", b"Art\xedculo 1. A\xf1o\n" * 3, "not UTF-8 text (byte 3)"),
        ("noid.txt", "Artículo 1. Objeto.\nTexto.\n".encode(), "no BOE identifier"),
    ],
)
def test_bad_input_is_one_parse_error_naming_the_file(tmp_path: Path, name: str, data: bytes | None, reason: str):
    path = tmp_path / name
    path.write_bytes(_blank_pdf() if data is None else data)
    with pytest.raises(ParseError) as excinfo:
        parse_file(path)
    assert str(path) in str(excinfo.value)
    assert reason in str(excinfo.value)


def test_resolve_expands_folders_id_lists_and_ids(tmp_path: Path) -> None:
    (tmp_path / "laws").mkdir()
    (tmp_path / "laws" / "BOE-A-2099-1.txt").write_text(TEXT_LAW, encoding="utf-8")
    (tmp_path / "laws" / "notes.json").write_text("{}")
    (tmp_path / "laws" / "README.md").write_text("# About these laws\n")
    ids = tmp_path / "ids.txt"
    ids.write_text("# my laws\nBOE-A-1978-31229  # Constitución\n\nBOE-A-2015-10565\n", encoding="utf-8")
    found = list(resolve([str(tmp_path / "laws"), str(ids), "BOE-A-1995-25444"]))
    assert [s.label for s in found] == [
        str(tmp_path / "laws" / "BOE-A-2099-1.txt"),
        "BOE-A-1978-31229",
        "BOE-A-2015-10565",
        "BOE-A-1995-25444",
    ]
    with pytest.raises(ParseError, match="not a BOE id"):
        list(resolve(["no-such-thing"]))


def test_shipped_corpus_lists() -> None:
    from legalsearch.sources import read_id_list

    corpora = Path(__file__).resolve().parent.parent / "corpora"
    justicio = read_id_list(corpora / "justicio.txt")
    assert len(justicio) == len(set(justicio)) == 40
    assert {"BOE-A-1978-31229", "BOE-A-2022-11589", "BOJA-b-2024-90030"} <= set(justicio)
    codigos_lines = [ln for ln in (corpora / "codigos.txt").read_text(encoding="utf-8").splitlines() if ln[:1] == "B"]
    assert all("#" in line for line in codigos_lines), "every code is named in a comment"
    assert {"BOE-A-1889-4763", "BOE-A-1995-25444", "BOE-A-2000-323", "BOE-A-2015-11430"} <= set(
        read_id_list(corpora / "codigos.txt")
    )
