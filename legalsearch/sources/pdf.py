"""BOE consolidated-text PDFs (`/buscar/pdf/AAAA/BOE-A-…-consolidado.pdf`), read with pypdf."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

from ..documents import Law
from ..errors import ParseError
from ..quiet import quiet_third_party
from .boe_xml import BOE_ID
from .structure import segment
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


def _body_lines(pages: list[str]) -> list[str]:
    lines = [line for page in pages for line in page.split("\n")]
    starts = [i for i, line in enumerate(lines) if _START.match(line)]
    if starts:
        lines = lines[starts[0] + 1 :]
        if lines and lines[0].startswith(("Última modificación", "Texto original")):
            lines = lines[1:]
    else:  # no marker: drop the title page's index lines ("Artículo 4 ........ 12")
        lines = [line for line in lines if not _TOC_LINE.search(line)]
    return [line for line in lines if not _RUNNING.match(line.strip())]


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
    found = BOE_ID.search(subject) or BOE_ID.search(pages[0]) or BOE_ID.search(origin)
    if not found:
        raise ParseError(origin, "no BOE identifier in the PDF metadata, its first page or its file name")
    boe_id = found[1]
    title = str(info.get("/Title") or "").strip() or pages[0].split("\n", 1)[0].strip()
    first_page = pages[0]
    published = re.search(r"«BOE» núm\. \d+, de (.+)", first_page)
    lines = _body_lines(pages)
    articles = segment(boe_id, list(line_blocks(_paragraphs(lines), notes_need_ref=True)))
    if not any(a.kind != "preambulo" for a in articles):
        raise ParseError(origin, "no articles found in the PDF text")
    departamento = first_page.split("\n")[1].strip() if first_page.count("\n") > 2 else None
    return Law(
        boe_id=boe_id,
        title=title,
        source_format="pdf",
        origin=origin,
        departamento=departamento if departamento and not departamento.startswith("«") else None,
        fecha_publicacion=_spanish_date(published[1]) if published else None,
        fecha_actualizacion=_spanish_date(subject.split("actualizado a", 1)[-1])
        if "actualizado a" in subject
        else None,
        articles=articles,
    )
