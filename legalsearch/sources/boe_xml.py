"""BOE XML: the open-data API's consolidated text (`<response><data>…<texto><bloque><version>`) and the diario
XML of a law as originally published (`<documento><metadatos>…<texto>` of flat `<p class>`)."""

from __future__ import annotations

import datetime
import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace

from ..documents import Article, Law, article_url
from ..errors import ParseError
from .structure import STRUCTURE_LEVELS, Block, Version, role_for_class, segment

BOE_ID = re.compile(r"\b(BOE-[A-Z]-\d{4}-\d+|BOJA-[a-z]-\d{4}-\d+|[A-Z]{2,5}-[A-Za-z]-\d{4}-\d+)\b")


def iso_date(value: str | None) -> str | None:
    """ "19781229" or "20231215T130326Z" → "1978-12-29"; None for empty values."""
    if not value:
        return None
    m = re.match(r"(\d{4})(\d{2})(\d{2})", value.strip())
    return f"{m[1]}-{m[2]}-{m[3]}" if m else None


def detect(data: bytes) -> str | None:
    head = data[:4096].lstrip()
    if not head.startswith(b"<?xml") and not head.startswith(b"<"):
        return None
    if b"<response" in head:
        return "boe-api-xml"
    if b"<documento" in head:
        return "boe-diario-xml"
    return None


def _root(data: bytes, origin: str) -> ET.Element:
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise ParseError(origin, f"malformed or truncated XML ({exc})") from None
    except (LookupError, ValueError) as exc:  # e.g. an XML declaration naming an unknown encoding
        raise ParseError(origin, f"unreadable XML ({exc})") from None


def _text(element: ET.Element | None) -> str:
    return "".join(element.itertext()) if element is not None else ""


def _blocks(element: ET.Element, version: Version | None, anchor: str | None = None) -> Iterator[Block]:
    """Blocks of the BOE paragraphs under `element`, in document order; tables become one paragraph per row."""
    for child in element:
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            role = role_for_class(child.get("class"))
            yield Block(role, _text(child), anchor if role == "heading" else None, version)
            if role == "heading":
                anchor = None
        elif tag == "blockquote":
            notes = [p for p in child.iter() if p.tag.rsplit("}", 1)[-1] == "p"]
            if notes and all(role_for_class(p.get("class")) == "note" for p in notes):
                yield Block("note", " ".join(_text(p) for p in notes), None, version)
            else:
                yield from _blocks(child, version, anchor)
        elif tag == "tr":
            cells = [" ".join(_text(cell).split()) for cell in child if cell.tag.rsplit("}", 1)[-1] in ("td", "th")]
            yield Block("paragraph", " | ".join(c for c in cells if c), None, version)
        elif tag in ("img", "a"):
            continue
        else:
            yield from _blocks(child, version, anchor)


def _versions(bloque: ET.Element, as_of: str | None) -> list[ET.Element]:
    """The wordings of a bloque in force on or before `as_of` (all without it), oldest first; of wordings that
    came into force the same day, the last in document order."""
    versions = bloque.findall("version")
    if as_of:
        day = as_of.replace("-", "")
        versions = [v for v in versions if _day(v) <= day]
    by_day = {_day(v): v for v in sorted(versions, key=_day)}  # a stable sort: equal days keep document order
    return list(by_day.values())


def _day(version: ET.Element) -> str:
    return version.get("fecha_vigencia") or version.get("fecha_publicacion") or ""


def _version(element: ET.Element, until: str | None = None) -> Version:
    return Version(
        iso_date(element.get("fecha_vigencia")),
        iso_date(element.get("fecha_publicacion")),
        element.get("id_norma"),
        until,
    )


def expiry(bloque: ET.Element) -> str | None:
    """The ISO day a bloque stops being in force (its `fecha_caducidad`); None for none, `99999999` (no end)
    or a value that is no calendar day."""
    day = iso_date(bloque.get("fecha_caducidad"))
    if day is None or day.startswith("9999"):
        return None
    try:
        datetime.date.fromisoformat(day)
    except ValueError:
        return None
    return day


def _is_structure_only(version: ET.Element) -> bool:
    """A wording that holds only structure headings (Título, Capítulo, Sección …), no article or text."""
    roles = {role_for_class(p.get("class")) for p in version.iter("p")}
    return bool(roles) and roles <= {*STRUCTURE_LEVELS, "anexo", "note"}


def _precepto_blocks(bloque: ET.Element, chosen: ET.Element, version: Version) -> list[Block]:
    """The blocks of one wording of an article or disposición: its first heading opens the unit. A precepto
    that is only structure headings (the BOE files some Secciones so) is those headings."""
    blocks = list(_blocks(chosen, version))
    headings = [i for i, b in enumerate(blocks) if b.role == "heading"]
    if not headings and _is_structure_only(chosen):
        return blocks
    if not headings:
        blocks.insert(0, Block("heading", bloque.get("titulo") or bloque.get("id") or "", None, version))
        headings = [0]
    blocks[headings[0]].anchor = bloque.get("id")
    for i in headings[1:]:  # an article quoted inside this one (an amending provision)
        blocks[i].role = "paragraph"
    return blocks


def _api_blocks(texto: ET.Element, as_of: str | None) -> Iterator[Block]:
    """The blocks of the wording in force (on `as_of`). A bloque past its `fecha_caducidad` that day is left
    out; in the current view an expired article stays, marked with its end (`Version.until`), while an expired
    structure heading (a Sección that no longer exists) leaves the path of the articles after it."""
    today = as_of or datetime.date.today().isoformat()
    for bloque in texto.iter("bloque"):
        versions = _versions(bloque, as_of)
        if not versions:
            continue
        chosen = versions[-1]
        until = expiry(bloque)
        if until is not None and until <= today and (as_of is not None or _is_structure_only(chosen)):
            continue
        version = _version(chosen, until)
        tipo, anchor = bloque.get("tipo"), bloque.get("id")
        if tipo == "preambulo":
            yield Block("preambulo", "", anchor, version)
        elif tipo == "parte_dispositiva":
            yield Block("texto", "", anchor, version)
        elif tipo == "firma":
            yield Block("signature", "firma", anchor, version)
            continue
        elif tipo == "precepto":
            yield from _precepto_blocks(bloque, chosen, version)
            continue
        yield from _blocks(chosen, version)


def _earlier_wordings(boe_id: str, texto: ET.Element, as_of: str | None, units: list[Article]) -> list[Article]:
    """Every earlier wording of the articles and disposiciones in `units` (the wordings in force), each with the
    dates it was in force: from its own `version_date` until the next wording's (`version_until`).

    A wording takes its unit's identity (id, kind, place in the law) from the unit in force; consecutive
    wordings with the same text (a version that only changed a note) are one."""
    by_anchor = {unit.anchor: unit for unit in units}
    history: list[Article] = []
    for bloque in texto.iter("bloque"):
        unit = by_anchor.get(bloque.get("id"))
        if unit is None or bloque.get("tipo") != "precepto":
            continue
        versions = _versions(bloque, as_of)
        earlier: list[Article] = []
        for element, successor in itertools.pairwise(versions):
            version = _version(element)
            if version.date is None:
                continue
            parsed = segment(boe_id, _precepto_blocks(bloque, element, version))
            if not parsed:
                continue
            until = iso_date(_day(successor))  # never None: a successor without dates would read as in force
            old = parsed[0]
            if earlier and (earlier[-1].heading, earlier[-1].text) == (old.heading, old.text):
                earlier[-1].version_until = until
                continue
            earlier.append(
                replace(
                    unit,
                    heading=old.heading if old.article_id == unit.article_id else unit.heading,
                    text=old.text,
                    notes=old.notes,
                    url=article_url(boe_id, unit.anchor, version.date),
                    version_date=version.date,
                    version_published=version.published,
                    version_norma=version.norma,
                    version_until=until,
                    status="vigente",  # replaced by a later wording, not repealed
                )
            )
        history += earlier
    return history


def _law_metadata(meta: ET.Element | None, fallback_id: str | None, origin: str) -> dict:
    def get(name: str) -> str | None:
        value = meta.findtext(name) if meta is not None else None
        return value.strip() if value and value.strip() else None

    boe_id = get("identificador") or fallback_id
    if not boe_id:
        raise ParseError(origin, "no BOE identifier in the XML; name the file after the law (BOE-A-AAAA-NNNN.xml)")
    derogada = any(get(flag) == "S" for flag in ("estatus_derogacion", "estatus_anulacion", "vigencia_agotada"))
    status = (
        "derogada" if derogada else ("vigente" if meta is not None and get("estatus_derogacion") else "desconocido")
    )
    return dict(
        boe_id=boe_id,
        title=get("titulo") or boe_id,
        rango=get("rango"),
        departamento=get("departamento"),
        fecha_disposicion=iso_date(get("fecha_disposicion")),
        fecha_publicacion=iso_date(get("fecha_publicacion")),
        fecha_vigencia=iso_date(get("fecha_vigencia")),
        fecha_actualizacion=iso_date(get("fecha_actualizacion")),
        eli_url=get("url_eli"),
        status=status,
    )


def analysis(analisis: ET.Element | None) -> tuple[tuple[str, ...], dict]:
    """The materias and the referencias (anteriores, posteriores) of an `<analisis>` element."""
    if analisis is None:
        return (), {}
    materias = tuple(_text(m) for m in analisis.iterfind("materias/materia") if _text(m))
    referencias: dict[str, list[dict]] = {}
    for direction, tag in (("anteriores", "anterior"), ("posteriores", "posterior")):
        found = [
            {
                "id_norma": (ref.findtext("id_norma") or ref.get("referencia") or "").strip(),
                "relacion": (ref.findtext("relacion") or "").strip(),
                "texto": (ref.findtext("texto") or "").strip(),
            }
            for ref in analisis.iterfind(f"referencias/{direction}/{tag}")
        ]
        if found:
            referencias[direction] = found
    return materias, referencias


def parse_api(data: bytes, origin: str, as_of: str | None = None, history: bool = False) -> Law:
    """A law from the API's consolidated XML: the wording in force (on `as_of`, when given) of every unit and,
    with `history`, the earlier wordings of its articles and disposiciones in `Law.history`."""
    root = _root(data, origin)
    data_el = root.find("data")
    texto = data_el.find("texto") if data_el is not None else None
    if texto is None and data_el is not None and data_el.find("bloque") is not None:
        texto = data_el  # a /texto/bloque/<id> response: one block of the law
    if texto is None:
        raise ParseError(origin, "BOE API response without <texto>; fetch the law's /texto as well")
    first_version = texto.find("bloque/version")
    origin_id = BOE_ID.search(origin)
    fallback = origin_id[1] if origin_id else (first_version.get("id_norma") if first_version is not None else None)
    meta = _law_metadata(data_el.find("metadatos"), fallback, origin)
    articles = segment(meta["boe_id"], list(_api_blocks(texto, as_of)))
    today = datetime.date.today().isoformat()
    for article in articles:  # the current view keeps expired units, marked repealed from their end date
        if as_of is None and article.version_until is not None and article.version_until <= today:
            article.status = "derogado"
    law = Law(source_format="boe-api-xml", origin=origin, articles=articles, **meta)
    law.materias, law.referencias = analysis(data_el.find("analisis"))
    if history:
        law.history = _earlier_wordings(meta["boe_id"], texto, as_of, articles)
    if not law.fecha_actualizacion:
        dates = [a.version_date for a in articles if a.version_date]
        law.fecha_actualizacion = max(dates) if dates else None
    return law


def parse_diario(data: bytes, origin: str) -> Law:
    root = _root(data, origin)
    texto = root.find("texto")  # the direct child: <analisis> holds <texto> elements of its own
    if texto is None:
        raise ParseError(origin, "BOE diario XML without <texto>")
    origin_id = BOE_ID.search(origin)
    meta = _law_metadata(root.find("metadatos"), origin_id[1] if origin_id else None, origin)
    version = Version(meta["fecha_vigencia"], meta["fecha_publicacion"], meta["boe_id"])
    articles = segment(meta["boe_id"], list(_blocks(texto, version)))
    return Law(source_format="boe-diario-xml", origin=origin, articles=articles, **meta)
