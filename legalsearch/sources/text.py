"""Plain text and Markdown (e.g. legalize-es conversions with YAML front matter): a law as lines."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ..documents import Law
from ..errors import ParseError
from .boe_xml import BOE_ID
from .structure import (
    ANEXO_HEADING,
    ARTICLE_LINE,
    DISPOSITION_LINE,
    GROUP_HEADING,
    SIGNATURE_LINE,
    Block,
    Role,
    fold,
    is_quoted,
    segment,
)

# Case-sensitive on purpose: a wrapped line of body text may start with "título I de la Ley …"
STRUCTURE_LINE = re.compile(
    r"^(?:(?:(?P<libro>LIBRO)|(?P<titulo>T[ÍI]TULO)|(?P<capitulo>CAP[ÍI]TULO)|(?P<seccion>SECCI[ÓO]N)"
    r"|(?P<subseccion>SUBSECCI[ÓO]N))\s+(?:[IVXLC]+\b|\d+|[A-ZÁÉÍÓÚ]{4,}\b)"
    # mixed case only as the BOE numbers them ("Sección 1.ª"): "Sección I: Disposiciones generales." is a list item
    r"|(?P<seccion_>Secci[óo]n)\s+\d+\.?ª|(?P<subseccion_>Subsecci[óo]n)\s+\d+\.?ª)"
)
NOTE_LINE = re.compile(
    r"^(?:Téngase en cuenta|Se modifica|Se añade|Se suprime|Se deroga|Se sustituye|Se declara|Se introduce|"
    r"Se renumera|Redactad[oa]|Véase|Declarad[oa]|Queda sin efecto|Esta modificación|Anulad[oa]|Suprimid[oa])"
)


def detect(data: bytes) -> str | None:
    if b"\x00" in data[:4096]:
        return None
    try:
        head = data[:65536].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < 65530:  # not a character cut in two by the slice
            return None
        head = data[: exc.start].decode("utf-8")
    if head.startswith("---\n") or re.search(r"^#{1,6} ", head, re.M):
        return "markdown"
    return "text"


def heading_role(line: str) -> Role | None:
    """The role of a line that opens a heading, or None for body text."""
    if is_quoted(line):
        return None
    if ARTICLE_LINE.match(line) or DISPOSITION_LINE.match(line) or GROUP_HEADING.match(line):
        return "heading"
    if m := STRUCTURE_LINE.match(line):
        return next(role.rstrip("_") for role, value in m.groupdict().items() if value)  # type: ignore[return-value]
    if ANEXO_HEADING.match(line) and line[:5] == "ANEXO":
        return "anexo"
    return None


def line_blocks(paragraphs: Iterable[str], notes_need_ref: bool = False) -> Iterator[Block]:
    """Blocks from logical paragraphs of text: headings recognised by their form, the line after a bare
    structure heading ("CAPÍTULO PRIMERO") taken as its title."""
    previous: Role | None = None
    bare_structure = False
    for paragraph in paragraphs:
        text = paragraph.strip()
        if not text:
            continue
        role = heading_role(text)
        if role is None and bare_structure and previous is not None:
            role = previous  # "De los españoles y los extranjeros" under "CAPÍTULO PRIMERO"
        elif (
            role is None
            and NOTE_LINE.match(text)
            and (not notes_need_ref or text.startswith(("Téngase", "Véase")) or re.search(r"Ref\.\s*BOE", text))
        ):
            role = "note"
        elif role is None and SIGNATURE_LINE.match(text):
            role = "signature"
        role = role or "paragraph"
        structural = role in ("libro", "titulo", "capitulo", "seccion", "subseccion", "anexo")
        bare_structure = structural and not bare_structure and _is_bare(text)
        previous = role if structural else None
        yield Block(role, text)


def _is_bare(text: str) -> bool:
    """ "CAPÍTULO PRIMERO" or "ANEXO II" with no title after it."""
    return bool(re.fullmatch(r"\S+(?:\s+\S+)?(?:\s+(?:BIS|TER|QUATER|bis|ter|quater))?\.?", text))


_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)
_MD_PREFIX = re.compile(r"^(?:#{1,6}\s+|>\s?)")


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, text
    meta = {}
    for line in m[1].splitlines():
        if ":" in line and not line.startswith(" "):
            key, value = line.split(":", 1)
            meta[key.strip()] = value.strip().strip('"')
    return meta, text[m.end() :]


def _markdown_paragraphs(body: str) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", body):
        text = " ".join(_MD_PREFIX.sub("", line) for line in block.splitlines())
        text = re.sub(r"\\([\\`*_{}\[\]()#+\-.!|>])", r"\1", text)  # markdown escapes: "1\." → "1."
        text = re.sub(r"(\*\*|__|(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w))", "", text)  # emphasis markers
        if text.strip():
            yield text


def parse(data: bytes, origin: str, markdown: bool | None = None) -> Law:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(origin, f"not UTF-8 text (byte {exc.start}); convert it to UTF-8 first") from None
    meta, body = _front_matter(text)
    if markdown is None:
        markdown = bool(meta) or bool(re.search(r"^#{1,6} ", body, re.M))
    paragraphs = _markdown_paragraphs(body) if markdown else body.splitlines()
    lines = list(paragraphs)
    title = meta.get("title")
    if lines and lines[0].strip() and not heading_role(lines[0]) and (title is None or lines[0] == title):
        title = title or BOE_ID.sub("", lines[0]).strip().rstrip(" -—|·(")
        lines = lines[1:]  # the title line ("# Title" in Markdown)
    boe_id = meta.get("identifier")
    if not boe_id:
        found = BOE_ID.search(text[:5000]) or BOE_ID.search(origin)
        boe_id = found[1] if found else None
    if not boe_id:
        raise ParseError(origin, "no BOE identifier in the text or the file name; name the file BOE-A-AAAA-NNNN.txt")
    articles = segment(boe_id, list(line_blocks(lines)))
    if not any(a.kind != "preambulo" for a in articles):
        raise ParseError(origin, "no articles found; expected lines like 'Artículo 1. …'")
    status = {"in_force": "vigente", "repealed": "derogada"}.get(meta.get("status", ""), "desconocido")
    return Law(
        boe_id=boe_id,
        title=title or boe_id,
        source_format="markdown" if markdown else "text",
        origin=origin,
        rango=meta.get("rank", "").capitalize() or None,
        departamento=meta.get("department"),
        fecha_disposicion=meta.get("enactment_date"),
        fecha_publicacion=meta.get("publication_date"),
        fecha_vigencia=meta.get("entry_into_force"),
        fecha_actualizacion=meta.get("last_updated"),
        eli_url=meta.get("url_eli") or meta.get("source"),
        status=status,  # type: ignore[arg-type]
        articles=articles,
    )


__all__ = ["detect", "fold", "heading_role", "line_blocks", "parse"]
