"""From a stream of typed blocks to the law's units.

Every source format (BOE XML, HTML, PDF, text) is first read into a flat list of `Block`s — a heading of some
level, a paragraph, an editorial note, a signature — and one `Segmenter` turns that list into `Article`s. Keeping
the law's structure rules in one place is what makes the same law give the same ids in every format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ..documents import Article, ArticleKind, article_url
from ..folding import fold
from ..headings import (  # noqa: F401 (re-exported)  # noqa: F401 (re-exported)
    _DISPOSITION_KIND,
    _DISPOSITION_PREFIX,
    _ORDINAL_STEM,
    _ORDINAL_STEMS,
    _ORDINAL_WORD,
    _ROMAN,
    _STEMS_LONGEST_FIRST,
    _SUFFIX,
    _SUFFIX_SPELLINGS,
    ANEXO_HEADING,
    ARTICLE_HEADING,
    ARTICLE_RANGE,
    DISPOSITION_HEADING,
    GROUP_HEADING,
    ORDINAL_HEADING,
    REPEALED_HEADING,
    REPEALED_TEXT,
    HeadingInfo,
    _ordinal_id,
    article_id_for,
    is_repealed,
    normal_suffix,
    ordinal_value,
    parse_heading,
    roman_value,
)

Role = Literal[
    "heading",  # an article / disposición heading ("Artículo 14.", "Disposición adicional primera.", "Primera.")
    "libro",
    "titulo",
    "capitulo",
    "seccion",
    "subseccion",
    "anexo",
    "paragraph",
    "note",  # editorial note: "Se modifica por…", "Téngase en cuenta…"
    "signature",  # firma del Rey / ministro; ends the unit
    "preambulo",  # an explicit start of the preamble
    "texto",  # an explicit start of a dispositive text not divided into articles
]
STRUCTURE_LEVELS: dict[str, int] = {"libro": 0, "titulo": 1, "capitulo": 2, "seccion": 3, "subseccion": 4}


@dataclass
class Version:
    """Dates of the wording a block comes from (consolidated sources only)."""

    date: str | None = None  # in force from (ISO)
    published: str | None = None  # ISO
    norma: str | None = None  # BOE id of the law that gave the wording
    until: str | None = None  # no longer in force from (ISO): the block's fecha_caducidad


@dataclass
class Block:
    role: Role
    text: str
    anchor: str | None = None  # the BOE's own anchor for the unit this block opens, when the source has one
    version: Version | None = None


def clean_text(text: str) -> str:
    """Collapse whitespace (NBSP, U+2002/U+2003 included) and trim; keep the characters themselves."""
    return re.sub(r"\s+", " ", text.replace("\u00ad", "")).strip()


ARTICLE_LINE = re.compile(
    rf"^(?:Art[íi]culo\s+(?:\d+|{_ORDINAL_WORD})(?:[\s\-]+{_SUFFIX})?(?:\s+[a-z]\))?\s*(?:\.|[º°]|$)|Art[íi]culos?\s+\d+(?:\s+{_SUFFIX})?\s+(?:a|al|y)\s+\d+(?:\s+{_SUFFIX})?\s*\.)"
)
DISPOSITION_LINE = re.compile(
    rf"^Disposici[oó]n\s+(?:adicional|transitoria|derogatoria|final)(?:\s+(?:{_ORDINAL_WORD}|\d+))?"
    rf"(?:\s+{_SUFFIX})?\s*(?:\.|$)"
)
STRUCTURE_LINE = re.compile(
    r"^(?P<kind>LIBRO|T[ÍI]TULO|CAP[ÍI]TULO|SECCI[ÓO]N|SUBSECCI[ÓO]N)\s+(?:[IVXLC]+|\d+|[A-ZÁÉÍÓÚ]+[OA]?|PRELIMINAR)\b",
    re.IGNORECASE,
)
_STRUCTURE_WORD = {"libro": "libro", "titulo": "titulo", "capitulo": "capitulo", "seccion": "seccion",
                   "subseccion": "subseccion"}  # fmt: skip

# BOE paragraph classes, shared by the diario XML, the API XML and every HTML rendering of them
_CLASS_ROLES: dict[str, Role] = {
    "articulo": "heading",
    "libro": "libro", "libro_num": "libro", "libro_tit": "libro",
    "titulo": "titulo", "titulo_num": "titulo", "titulo_tit": "titulo",
    "capitulo": "capitulo", "capitulo_num": "capitulo", "capitulo_tit": "capitulo",
    "seccion": "seccion", "subseccion": "subseccion",
    "anexo": "anexo", "anexo_num": "anexo", "anexo_tit": "anexo",
    "nota_pie": "note", "nota_pie_2": "note", "nota_inicial": "note", "refPost": "note",
    "firma_rey": "signature", "firma_ministro": "signature", "firma": "signature",
}  # fmt: skip


def role_for_class(css_class: str | None) -> Role:
    """The role of a BOE paragraph from its class (`articulo`, `titulo_num`, `nota_pie` …)."""
    return _CLASS_ROLES.get(css_class or "", "paragraph")


def structure_level_of(text: str) -> str | None:
    """ "libro", "titulo" … when a line reads as a structure heading ("TÍTULO I", "CAPÍTULO PRIMERO")."""
    m = STRUCTURE_LINE.match(text)
    return _STRUCTURE_WORD[fold(m["kind"])] if m else None


SIGNATURE_LINE = re.compile(
    r"^(?:POR TANTO,|Dado en [^,]{0,40}, (?:a|el) \d|Dada en [^,]{0,40}, (?:a|el) \d|Así lo dispongo por|"
    r"PALACIO DE (?:LA|LAS) |JUAN CARLOS R\.$|FELIPE R\.$)"
)


INDEX_HEADING = re.compile(r"^(?:[ÍI]NDICE|[ÍI]ndice)(?:\s+(?:GENERAL|general|SISTEMÁTICO|sistemático))?\.?$")
INDEX_ENTRY = re.compile(
    r"^(?:Libro|T[íi]tulo|Cap[íi]tulo|Secci[óo]n|Subsecci[óo]n|Art[íi]culos?|Disposici[óo]n(?:es)?|Anexo|Pre[áa]mbulo|"
    r"LIBRO|T[ÍI]TULO|CAP[ÍI]TULO|SECCI[ÓO]N|DISPOSICI[ÓO]N(?:ES)?|ANEXO)\b",
)


def is_quoted(text: str) -> bool:
    """Headings quoted inside an amending provision (`«Artículo 11 bis. …`) belong to another law."""
    return text.lstrip()[:1] in "«\"“'‘>"


# --- the segmenter --------------------------------------------------------------------------------------


@dataclass
class _Unit:
    kind: ArticleKind
    article_id: str
    number: str | None
    heading: str
    path: tuple[str, ...]
    anchor: str | None
    paragraphs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    version: Version | None = None
    pending: list[str] = field(default_factory=list)  # anexo: structure headings not yet known to be body


class Segmenter:
    """Builds the units of one law from its blocks, in order."""

    def __init__(self, boe_id: str) -> None:
        self.boe_id = boe_id
        self.units: list[_Unit] = []
        self.current: _Unit | None = None
        self.path: dict[int, str] = {}  # level → heading; level -1 holds an enclosing anexo (a reglamento)
        self.last_structure: int | None = None  # level of this block if it is a structure heading
        self.prev_structure: int | None = None  # … and of the block before it
        self.group: str | None = None  # "adicional" … under a "DISPOSICIONES ADICIONALES" heading
        self.group_open = False  # a singular group heading ("DISPOSICIÓN FINAL") still waiting for its body
        self._group_heading: tuple[Block, str] | None = None
        self.in_signature = False
        self.quote_depth = 0  # inside «…» text that an amending provision inserts into another law
        self.in_index = False  # inside a table of contents ("ÍNDICE"): its lines are not text of any unit

    # public -------------------------------------------------------------------------------------------
    def feed(self, blocks: list[Block]) -> list[Article]:
        for block in blocks:
            text = clean_text(re.sub(r"^\[(?:encabezado|precepto)\]", "", block.text))
            if text or block.role in ("preambulo", "texto"):
                self.prev_structure, self.last_structure = self.last_structure, None
                role = block.role
                if self._index_line(role, text):
                    continue
                if block.anchor is not None:
                    self.quote_depth = 0  # a new bloque of a consolidated text: never inside a quotation
                elif self.quote_depth > 0 and role in ("heading", "anexo", *STRUCTURE_LEVELS):
                    role = "paragraph"  # a heading of the law being amended, quoted in full
                getattr(self, f"_on_{role}", self._on_structure)(block, text)
        return self._finish()

    def _index_line(self, role: str, text: str) -> bool:
        """Whether this block belongs to a table of contents: the "ÍNDICE" line and the entries after it, up to
        the first block that is no entry (the law's real first heading, or text)."""
        if role == "paragraph" and INDEX_HEADING.match(text):
            self.in_index = True
            return True
        if self.in_index and role == "paragraph" and INDEX_ENTRY.match(text) and len(text) < 300:
            return True
        self.in_index = False
        return False

    # handlers -----------------------------------------------------------------------------------------
    def _on_preambulo(self, block: Block, text: str) -> None:
        self._open(_Unit("preambulo", "preambulo", None, "Preámbulo", (), block.anchor, version=block.version))
        if text:
            self.current.paragraphs.append(text)

    def _on_texto(self, block: Block, text: str) -> None:
        self._open(_Unit("texto", "texto", None, "Texto", self._path(), block.anchor, version=block.version))
        if text:
            self.current.paragraphs.append(text)

    def _on_heading(self, block: Block, text: str) -> None:
        info = None if is_quoted(text) else parse_heading(text, self.group)
        if info is None:
            if m := GROUP_HEADING.match(text):
                return self._on_group(block, fold(m["kind"]))
            return self._on_paragraph(block, text)
        self.group_open = False
        current = self.current
        if current is not None and current.kind == "anexo" and not current.paragraphs:
            # An anexo whose first content is an article is a container (a reglamento, a texto refundido)
            self.path = {-1: current.heading, **{k: v for k, v in self.path.items() if k >= 0}}
            self.current = None
        if info.kind != "articulo":
            self.path = {k: v for k, v in self.path.items() if k < 0}
        heading = text
        if self.group and ORDINAL_HEADING.match(text) and not DISPOSITION_HEADING.match(text):
            heading = f"Disposición {self.group} {text[:1].lower()}{text[1:]}"
        self._open(
            _Unit(info.kind, info.article_id, info.number, heading, self._path(), block.anchor, version=block.version)
        )

    def _on_group(self, block: Block, kind: str) -> None:
        self.group = kind
        self.group_open = True
        self._close()
        self.path = {k: v for k, v in self.path.items() if k < 0}
        self._group_heading = (block, kind)

    def _on_structure(self, block: Block, text: str) -> None:
        if m := GROUP_HEADING.match(text):
            return self._on_group(block, fold(m["kind"]))
        level = STRUCTURE_LEVELS[block.role]
        if self.prev_structure is None and structure_level_of(text) is None:
            # Classed as a heading but not one ("EXPOSICIÓN DE MOTIVOS", "JUAN CARLOS I" in a preamble)
            return self._on_paragraph(block, text)
        current = self.current
        if current is not None and current.kind == "anexo":
            if current.paragraphs:
                current.paragraphs.append(text)
                return
            current.pending.append(text)
        if self.prev_structure == level and level in self.path:
            self.path[level] = f"{self.path[level]}. {text}"  # "TÍTULO I" + "De los derechos …"
        else:
            self.path = {k: v for k, v in self.path.items() if k < level}
            self.path[level] = text
        self.last_structure = level
        self.group = None
        if current is not None and current.kind != "anexo":
            self._close()

    def _on_anexo(self, block: Block, text: str) -> None:
        current = self.current
        if current is not None and current.kind == "anexo" and not current.paragraphs and not current.pending:
            current.heading = f"{current.heading}. {text}"  # "ANEXO I" + its title
            return
        m = ANEXO_HEADING.match(text)
        num = m["num"] if m else None  # no "ANEXO" word: an annexed text by its title ("REGLAMENTO DEL …")
        if num is None or fold(num) == "unico":
            ident, number = "an", None
        else:
            value = int(num) if num.isdigit() else roman_value(num.upper())
            ident, number = f"an{value}", num
        self.group = None
        self.path = {}
        self._open(_Unit("anexo", ident, number, text, (), block.anchor, version=block.version))

    def _on_paragraph(self, block: Block, text: str) -> None:
        if self.in_signature:
            return
        if self.current is not None and self.current.kind != "preambulo" and SIGNATURE_LINE.match(text):
            return self._on_signature(block, text)
        if self.current is None:
            if self.group_open and self.group:
                gblock, kind = self._group_heading
                ident = _DISPOSITION_PREFIX[kind]
                heading = f"Disposición {kind}"
                self._open(
                    _Unit(
                        _DISPOSITION_KIND[kind],
                        ident,
                        None,
                        heading,
                        self._path(),
                        gblock.anchor,
                        version=block.version,
                    )
                )
                self.group_open = False
            elif self.units and self.path and len(text) < 120 and not text.endswith((".", ":", ";")):
                # a subtitle under a structure heading ("Disposiciones generales"), not text of its own
                deepest = max(self.path)
                self.path[deepest] = f"{self.path[deepest]}. {text}"
                return
            else:
                kind: ArticleKind = "texto" if self.units or self.path else "preambulo"
                ident = "preambulo" if kind == "preambulo" else "texto"
                heading = "Preámbulo" if kind == "preambulo" else "Texto"
                self._open(_Unit(kind, ident, None, heading, self._path(), block.anchor, version=block.version))
        current = self.current
        if current.pending:
            current.paragraphs.extend(current.pending)
            current.pending.clear()
        current.paragraphs.append(text)
        if current.kind != "preambulo":
            # Spanish quotations running over several paragraphs open each following one with "»"
            # Only a paragraph that opens with "«" starts a quotation: a stray "«" inside a sentence (a typo in
            # the law) must not swallow the headings that follow.
            body = text[1:] if text.startswith("»") else text
            net = body.count("«") - body.count("»")
            if self.quote_depth or body.startswith("«"):
                self.quote_depth = max(0, self.quote_depth + net)
        if current.version is None and block.version is not None:
            current.version = block.version

    def _on_note(self, block: Block, text: str) -> None:
        if self.current is not None:
            self.current.notes.append(text)

    def _on_signature(self, block: Block, text: str) -> None:
        self._close()
        self.in_signature = True

    # helpers ------------------------------------------------------------------------------------------
    def _path(self) -> tuple[str, ...]:
        return tuple(v for _, v in sorted(self.path.items()))

    def _open(self, unit: _Unit) -> None:
        self._close()
        self.quote_depth = 0
        self.current = unit
        self.in_signature = False

    def _close(self) -> None:
        if self.current is not None:
            self.units.append(self.current)
            self.current = None

    def _finish(self) -> list[Article]:
        self._close()
        articles: list[Article] = []
        seen: dict[str, int] = {}
        for unit in self.units:
            if unit.kind != "articulo" and not unit.paragraphs:  # e.g. an anexo that is only an image
                continue
            ident = unit.article_id
            seen[ident] = seen.get(ident, 0) + 1
            if seen[ident] > 1:  # the BOE's own convention for repeated anchors
                ident = f"{ident}-{seen[ident]}"
            anchor = unit.anchor or ident
            version = unit.version or Version()
            text = "\n".join(unit.paragraphs)
            status = "derogado" if is_repealed(unit.heading, text) else "vigente"
            articles.append(
                Article(
                    article_id=ident,
                    kind=unit.kind,
                    number=unit.number,
                    heading=unit.heading,
                    path=unit.path,
                    text=text,
                    url=article_url(self.boe_id, anchor),
                    anchor=anchor,
                    notes=tuple(unit.notes),
                    version_date=version.date,
                    version_published=version.published,
                    version_norma=version.norma,
                    version_until=version.until,
                    status=status,
                )
            )
        return articles


def segment(boe_id: str, blocks: list[Block]) -> list[Article]:
    """Units of a law, in order, from its blocks."""
    return Segmenter(boe_id).feed(blocks)
