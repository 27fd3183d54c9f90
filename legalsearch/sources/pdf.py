"""BOE consolidated-text PDFs (`/buscar/pdf/AAAA/BOE-A-…-consolidado.pdf`), read with pypdf."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..documents import Law
from ..errors import ParseError
from ..quiet import quiet_third_party
from .boe_xml import BOE_ID
from .structure import clean_text, segment
from .text import heading_role, line_blocks

_RUNNING = re.compile(
    r"^(?:BOLETÍN OFICIAL DEL ESTADO|LEGISLACIÓN CONSOLIDADA|Página \d+|"
    r"Este documento es de carácter informativo y no tiene valor jurídico\.)\s*$"
)
_START = re.compile(r"^TEXTO CONSOLIDADO\s*$")
_TOC_LINE = re.compile(r"\.{4,}\s*\d+\s*$")
_MONTHS = {
    month: number
    for number, month in enumerate(
        [
            "enero",
            "febrero",
            "marzo",
            "abril",
            "mayo",
            "junio",
            "julio",
            "agosto",
            "septiembre",
            "octubre",
            "noviembre",
            "diciembre",
        ],
        1,
    )
}


def detect(data: bytes) -> str | None:
    return "pdf" if data[:1024].lstrip().startswith(b"%PDF") else None


def _spanish_date(text: str) -> str | None:
    m = re.search(r"(\d{1,2}) de (\w+) de (\d{4})", text)
    if not m or m[2].lower() not in _MONTHS:
        return None
    return f"{m[3]}-{_MONTHS[m[2].lower()]:02d}-{int(m[1]):02d}"


# --- the first page: title, departamento, publication, reference ----------------------------------------

_PUBLICATION = re.compile(r"^«[^»]{2,60}» núm\. [\w-]+, de (?P<date>\d{1,2} de \w+ de \d{4})")
_REFERENCE = re.compile(r"^Referencia: (?P<id>BOE-[A-Z]-\d{4}-\d+)\s*$")
# The BOE's rangos as the open-data API names them, by the words a title starts with (longest first)
_RANGOS = (
    ("Real Decreto Legislativo", "Real Decreto Legislativo"),
    ("Real Decreto-ley", "Real Decreto-ley"),
    ("Real Decreto Ley", "Real Decreto-ley"),
    ("Real Decreto", "Real Decreto"),
    ("Real Orden", "Orden"),
    ("Decreto Legislativo", "Decreto Legislativo"),
    ("Decreto-ley", "Decreto-ley"),
    ("Decreto", "Decreto"),
    ("Ley Orgánica", "Ley Orgánica"),
    ("Ley Foral", "Ley Foral"),
    ("Ley", "Ley"),
    ("Orden", "Orden"),
    ("Resolución", "Resolución"),
    ("Instrucción", "Instrucción"),
    ("Circular", "Circular"),
    ("Acuerdo", "Acuerdo"),
    ("Reglamento", "Reglamento"),
    ("Directiva", "Directiva"),
)
# "Ley 39/2015, de 1 de octubre", "Real Decreto de 24 de julio de 1889": the number's year, then the day
_TITLE_DATE = re.compile(
    r"^[^,]{0,40}?(?:\s\d+/(?P<year>\d{4}))?,?\s+de\s+"
    r"(?P<day>\d{1,2}) de (?P<month>[a-záéíóú]+)(?: de (?P<full>\d{4}))?\b"
)


@dataclass
class FirstPage:
    """What the first page of a BOE consolidated PDF says about the law. Each field is None when the page does
    not say it in the BOE's usual layout: nothing is guessed."""

    title: str | None = None
    departamento: str | None = None
    published: str | None = None  # "2 de octubre de 2015"
    reference: str | None = None  # "BOE-A-2015-10565"


def _squeeze(text: str) -> str:
    """A title compared across line breaks and end-of-line hyphens."""
    return re.sub(r"[\s\-\u00ad]+", "", text).lower()


def _stands_alone(lines: list[str]) -> bool:
    """Whether the last of `lines` (the first page's lines above the publication) can be the departamento: a line
    of its own (the line before it ends a paragraph: pypdf ends a soft-wrapped line with a space) without the
    final period a title has."""
    filled = [line for line in lines if line.strip()]
    return len(filled) >= 2 and not filled[-2].endswith(" ") and not filled[-1].rstrip().endswith(".")


def read_first_page(page: str, title: str = "") -> FirstPage:
    """The title, departamento, publication and reference of a consolidated PDF's first page, which reads:
    title (one or more lines), departamento, «BOE» núm. N, de <date>, Referencia: BOE-A-…. `title` is the
    PDF's own /Title: where given, the departamento is what lies between it and the publication line."""
    raw = page.split("\n")
    lines = [line.strip() for line in raw]
    head = FirstPage(title=clean_text(title) or None)
    publication = next((i for i, line in enumerate(lines[:20]) if _PUBLICATION.match(line)), None)
    if publication is None:
        return head
    head.published = _PUBLICATION.match(lines[publication])["date"]
    if (m := _REFERENCE.match(lines[publication + 1] if publication + 1 < len(lines) else "")) is not None:
        head.reference = m["id"]
    above = [line for line in lines[:publication] if line]
    if head.title is None:
        if len(above) >= 2 and _stands_alone(raw[:publication]):
            head.title, head.departamento = clean_text(" ".join(above[:-1])), above[-1]
        elif above and above[-1].endswith("."):  # a title, wrapped, and no departamento
            head.title = clean_text(" ".join(above))
        return head
    for end in range(1, len(above)):
        if _squeeze(" ".join(above[:end])) == _squeeze(head.title):
            head.departamento = clean_text(" ".join(above[end:])) or None
            break
    return head


def rango_of(title: str | None) -> str | None:
    """The rango a title starts with ("Ley Orgánica 3/2020, …" → "Ley Orgánica"), as the BOE names it; None
    when the title starts otherwise."""
    if not title:
        return None
    if title.startswith("Constitución"):
        return "Constitución"
    for words, rango in _RANGOS:
        if re.match(rf"{re.escape(words)}(?=\s+(?:\d|de\b)|,)", title, re.IGNORECASE if "-" in words else 0):
            return rango
    return None


def disposition_date(title: str | None) -> str | None:
    """The date a norm was made, from its title: "Ley 39/2015, de 1 de octubre" → 2015-10-01."""
    m = _TITLE_DATE.match(title or "")
    year = m and (m["full"] or m["year"])
    return _spanish_date(f"{m['day']} de {m['month']} de {year}") if m and year else None


# --- the consolidated text ---------------------------------------------------------------------------

_REPEALED_BANNER = re.compile(r"^Norma (?:derogada|anulada)\b(?!, excepto)")


@dataclass
class Body:
    lines: list[str]
    last_modified: str | None = None  # what "Última modificación:" says
    banner: str | None = None  # the BOE's status note at the head of the text ("Norma derogada, con efectos …")


def _status(body: Body) -> str:
    """A consolidated text says so when the norm is repealed or annulled, in a note at its head ("Norma
    derogada, con efectos de …"): with that note, "derogada"; a consolidated text without one, "vigente"; any
    other PDF (the diario's, or a note with exceptions), "desconocido"."""
    if body.last_modified is None:
        return "desconocido"
    if body.banner is None:
        return "vigente"
    return "derogada" if _REPEALED_BANNER.match(body.banner) else "desconocido"


def _body_lines(pages: list[str]) -> Body:
    lines = [line for page in pages for line in page.split("\n")]
    starts = [i for i, line in enumerate(lines) if _START.match(line)]
    body = Body(lines)
    if starts:
        lines = lines[starts[0] + 1 :]
        if lines and lines[0].startswith(("Última modificación", "Texto original")):
            body.last_modified = lines[0].split(":", 1)[-1].strip()
            lines = lines[1:]
        if lines and lines[0].startswith("Norma "):  # the status note, up to its paragraph's last line
            end = next((i for i, line in enumerate(lines) if not line.endswith(" ")), len(lines) - 1) + 1
            body.banner = clean_text(" ".join(lines[:end]))
            lines = lines[end:]
    else:  # no marker: drop the title page's index lines ("Artículo 4 ........ 12")
        lines = [line for line in lines if not _TOC_LINE.search(line)]
    body.lines = [line for line in lines if not _RUNNING.match(line.strip())]
    return body


def _join(paragraph: str, line: str) -> str:
    """Glue a hard-wrapped line onto its paragraph, undoing end-of-line hyphenation."""
    if paragraph.endswith("-") and not paragraph.endswith(" -"):
        if re.search(r"[a-záéíóúñ]-$", paragraph) and line[:1].islower():
            return paragraph[:-1] + line.lstrip()  # "consti-" + "tución"
        return paragraph + line.lstrip()  # "BOE-" + "A-2018-8574"
    return f"{paragraph.rstrip()} {line.lstrip()}"


def _paragraphs(lines: list[str]) -> Iterator[str]:
    """Rebuild paragraphs: the BOE's PDFs end a soft-wrapped line with a space, a paragraph's last line without."""
    paragraph: str | None = None
    is_heading = False
    for line in lines:
        starts_heading = heading_role(line.strip()) is not None
        if paragraph is not None and not starts_heading:
            finished_heading = is_heading and paragraph.rstrip().endswith((".", ":"))
            if (paragraph.endswith(" ") or paragraph.endswith("-")) and not finished_heading:
                paragraph = _join(paragraph, line)
                continue
        if paragraph is not None:
            yield paragraph
        paragraph, is_heading = line, starts_heading
    if paragraph is not None:
        yield paragraph


def parse(data: bytes, origin: str) -> Law:
    from pypdf import PdfReader

    try:
        with quiet_third_party():  # pypdf logs a warning for every flaw it repairs
            reader = PdfReader(io.BytesIO(data))
            pages = [page.extract_text() or "" for page in reader.pages]
            info = reader.metadata or {}
    except Exception as exc:  # pypdf raises many kinds on a damaged file; each one means "unreadable PDF"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ParseError(origin, f"unreadable PDF ({reason})") from None
    if not "".join(pages).strip():
        raise ParseError(origin, "the PDF has no text layer (a scan?); run OCR on it first")
    subject = str(info.get("/Subject") or "")
    head = read_first_page(pages[0], str(info.get("/Title") or ""))
    found = BOE_ID.search(subject) or BOE_ID.search(pages[0]) or BOE_ID.search(origin)
    if not head.reference and not found:
        raise ParseError(origin, "no BOE identifier in the PDF metadata, its first page or its file name")
    boe_id = head.reference or found[1]
    body = _body_lines(pages)
    articles = segment(boe_id, list(line_blocks(_paragraphs(body.lines), notes_need_ref=True)))
    if not any(a.kind != "preambulo" for a in articles):
        raise ParseError(origin, "no articles found in the PDF text")
    updated = subject.split("actualizado a", 1)[-1] if "actualizado a" in subject else body.last_modified
    return Law(
        boe_id=boe_id,
        title=head.title or boe_id,
        source_format="pdf",
        origin=origin,
        rango=rango_of(head.title),
        departamento=head.departamento,
        fecha_disposicion=disposition_date(head.title),
        fecha_publicacion=_spanish_date(head.published or ""),
        fecha_actualizacion=_spanish_date(updated or ""),
        status=_status(body),  # type: ignore[arg-type]
        articles=articles,
    )
