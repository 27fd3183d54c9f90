"""BOE HTML: the consolidated page (`/buscar/act.php`, one `div.bloque` per precepto), the original-text pages
(`/buscar/doc.php`, `/diario_boe/txt.php`, text under `#textoxslt`), and pages that wrap BOE paragraphs
(`p.articulo`, `p.parrafo` …) in their own markup."""

from __future__ import annotations

import re
from collections.abc import Iterator

from bs4 import BeautifulSoup, Tag

from ..documents import Law
from ..errors import ParseError
from .boe_xml import BOE_ID
from .structure import Block, Version, role_for_class, segment

_SKIP_TAGS = {"form", "fieldset", "script", "style", "img", "nav", "button", "input", "label", "header", "footer"}
_SKIP_CLASSES = {"bloque", "linkSubir", "fuera", "etiqDoc", "pie_unico"}  # pie_unico: the version line
_VERSION_LINE = re.compile(r"publicad[ao] el (\d{2})/(\d{2})/(\d{4}), en vigor a partir del (\d{2})/(\d{2})/(\d{4})")


def detect(data: bytes) -> str | None:
    head = data[:2048].lstrip().lower()
    if not (head.startswith(b"<!doctype html") or head.startswith(b"<html") or b"<html" in head):
        return None
    return "boe-html"


def _dmy(day: str, month: str, year: str) -> str:
    return f"{year}-{month}-{day}"


def _walk(element: Tag, version: Version | None) -> Iterator[Block]:
    for child in element.children:
        if not isinstance(child, Tag) or child.name in _SKIP_TAGS:
            continue
        classes = child.get("class") or []
        if _SKIP_CLASSES.intersection(classes):
            continue
        css = classes[0] if classes else None
        if child.name in ("p", "h1", "h2", "h3", "h4", "h5", "h6"):
            role = role_for_class(css)
            yield Block(role, child.get_text(" "), None, version)
        elif child.name == "blockquote":
            paragraphs = child.find_all("p")
            if paragraphs and all(role_for_class((p.get("class") or [None])[0]) == "note" for p in paragraphs):
                yield Block("note", " ".join(p.get_text(" ") for p in paragraphs), None, version)
            else:
                yield from _walk(child, version)
        elif child.name == "tr":
            cells = [" ".join(c.get_text(" ").split()) for c in child.find_all(["td", "th"], recursive=False)]
            yield Block("paragraph", " | ".join(c for c in cells if c), None, version)
        else:
            yield from _walk(child, version)


def _bloque_version(bloque: Tag) -> Version | None:
    checked = bloque.select_one("fieldset input[checked]")
    label = bloque.find("label", attrs={"for": checked.get("id")}) if checked is not None else None
    label = label or bloque.select_one("p.pie_unico")  # a bloque with a single wording
    m = _VERSION_LINE.search(label.get_text(" ")) if label is not None else None
    return Version(_dmy(*m.groups()[3:]), _dmy(*m.groups()[:3])) if m else None


def _act_blocks(bloques: list[Tag]) -> Iterator[Block]:
    for bloque in bloques:
        anchor = bloque.get("id")
        version = _bloque_version(bloque)
        blocks = list(_walk(bloque, version))
        headings = [i for i, b in enumerate(blocks) if b.role == "heading"]
        if anchor == "no":  # "nota inicial": an editorial note on the whole law
            blocks = [Block("note", b.text, None, version) for b in blocks]
        elif anchor in ("preambulo", "pr") and not headings:
            yield Block("preambulo", "", anchor, version)
        elif anchor in ("fi", "firma"):
            yield Block("signature", "firma", anchor, version)
            continue
        if headings:
            blocks[headings[0]].anchor = anchor
            for i in headings[1:]:
                blocks[i].role = "paragraph"
        yield from blocks


def _metadata(soup: BeautifulSoup, origin: str) -> dict:
    text = soup.get_text(" ")
    boe_id = None
    for meta in soup.find_all("meta"):
        if (meta.get("name") or meta.get("property") or "").endswith("#id_local"):
            boe_id = meta.get("content")
            break
    if boe_id is None:
        ref = re.search(r"Referencia:\s*(\S+)", text) or BOE_ID.search(text[:20000]) or BOE_ID.search(origin)
        boe_id = ref[1] if ref else None
    if not boe_id:
        raise ParseError(origin, "no BOE identifier in the page; name the file after the law (BOE-A-AAAA-NNNN.html)")
    title_el = soup.select_one("h3.documento-tit") or soup.find("h1")
    title = " ".join(title_el.get_text(" ").split()) if title_el else ""
    if not title and soup.title:
        title = " ".join(soup.title.get_text(" ").replace(boe_id, "").split())
    published = re.search(r"Publicado en:.*?de (\d{2})/(\d{2})/(\d{4})", text, re.S)
    in_force = re.search(r"Entrada en vigor:\s*(\d{2})/(\d{2})/(\d{4})", text)
    updated = re.search(r"Última actualización,? publicada el (\d{2})/(\d{2})/(\d{4})", text)
    updated_compact = re.search(r"Última actualización oficial:\s*(\d{4})(\d{2})(\d{2})", text)
    departamento = re.search(r"Departamento:\s*([^\n|]+?)\s+(?:Referencia|Permalink|Seleccionar|$)", text)
    eli = re.search(r"https://www\.boe\.es/eli/\S+", text)
    return dict(
        boe_id=boe_id,
        title=title or boe_id,
        departamento=departamento[1].strip() if departamento else None,
        fecha_publicacion=_dmy(*published.groups()) if published else None,
        fecha_vigencia=_dmy(*in_force.groups()) if in_force else None,
        fecha_actualizacion=(
            _dmy(*updated.groups()) if updated else "-".join(updated_compact.groups()) if updated_compact else None
        ),
        eli_url=eli[0] if eli else None,
    )


def parse(data: bytes, origin: str) -> Law:
    soup = BeautifulSoup(data, "lxml")
    meta = _metadata(soup, origin)
    bloques = soup.select("div.bloque[id]")
    texto = soup.select_one("#textoxslt")
    if bloques:
        blocks = list(_act_blocks(bloques))
    elif texto is not None:
        blocks = list(_walk(texto, Version(meta["fecha_vigencia"], meta["fecha_publicacion"], meta["boe_id"])))
    else:
        body = soup.find("main") or soup.body or soup
        blocks = list(_walk(body, None))
    articles = segment(meta["boe_id"], blocks)
    if not any(a.kind not in ("preambulo",) for a in articles):
        raise ParseError(origin, "no articles found in this HTML page; is it a BOE law page (act.php / doc.php)?")
    return Law(source_format="boe-html", origin=origin, articles=articles, **meta)
