"""The data model every stage shares: a `Law` holding its ordered `Article`s, and the `Chunk`s that get embedded."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Literal

ArticleKind = Literal[
    "articulo",
    "disposicion_adicional",
    "disposicion_transitoria",
    "disposicion_derogatoria",
    "disposicion_final",
    "preambulo",
    "anexo",
    "texto",  # the dispositive text of a law not divided into articles (old orders, resoluciones)
]
ARTICLE_KINDS: tuple[str, ...] = ArticleKind.__args__  # type: ignore[attr-defined]

LawStatus = Literal["vigente", "derogada", "desconocido"]
UnitStatus = Literal["vigente", "derogado"]

BOE_URL = "https://www.boe.es/buscar/act.php?id={boe_id}"


def law_label(title: str, boe_id: str) -> str:
    """ "Constitución Española (BOE-A-1978-31229)"; the id alone when the source gave no title."""
    title = (title or "").rstrip(".")
    return boe_id if title in ("", boe_id) else f"{title} ({boe_id})"


def article_url(boe_id: str, anchor: str, as_of: str | None = None) -> str:
    """The BOE's citation link for one unit of a law: the consolidated page at the unit's anchor; with `as_of`
    (ISO date), the page as it read that day (the BOE's own `&tn=1&p=AAAAMMDD` link to an earlier wording)."""
    dated = f"&tn=1&p={as_of.replace('-', '')}" if as_of else ""
    return f"{BOE_URL.format(boe_id=boe_id)}{dated}#{anchor}"


@dataclass
class Article:
    """One unit users search for: an article, a disposición, the preámbulo or an anexo.

    `article_id` is the same whatever format the law came in (`a14`, `a14bis`, `au`, `da1`, `dtu`, `an2`);
    `anchor` is the fragment the BOE's own page uses for it when the source carried one (usually the same; the
    BOE numbers some anchors oddly, e.g. `a1-2` for article 10), and `url` points there.
    """

    article_id: str
    kind: ArticleKind
    number: str | None
    heading: str
    path: tuple[str, ...]
    text: str
    url: str
    anchor: str
    notes: tuple[str, ...] = ()
    version_date: str | None = None  # ISO date the text shown came into force
    version_published: str | None = None  # ISO date of the BOE issue that published this wording
    version_norma: str | None = None  # BOE id of the law that gave this wording
    version_until: str | None = None  # ISO date this wording stopped being in force (replaced, or the unit
    # expired: the BOE's fecha_caducidad); None: in force with no end date
    status: UnitStatus = "vigente"  # "derogado": repealed ("Artículos 127 a 130. (Derogados)") or expired

    @property
    def citation(self) -> str:
        """Short citation label, e.g. "Art. 14", "Disp. adicional 1.ª", "Anexo II"."""
        if self.kind == "articulo" and self.number:
            return f"Art. {self.number}"
        return self.heading.split(".")[0].strip() or self.article_id

    @property
    def repealed(self) -> bool:
        return self.status == "derogado"

    @property
    def content_hash(self) -> str:
        return hashlib.sha256("\x1f".join((self.heading, " › ".join(self.path), self.text)).encode()).hexdigest()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = list(self.path)
        data["notes"] = list(self.notes)
        return data


@dataclass
class Law:
    """One statute as read from one source, with its units in the law's own order."""

    boe_id: str
    title: str
    source_format: str
    origin: str
    rango: str | None = None
    departamento: str | None = None
    fecha_disposicion: str | None = None
    fecha_publicacion: str | None = None
    fecha_vigencia: str | None = None
    fecha_actualizacion: str | None = None  # the consolidation date of the text ("actualizado a")
    eli_url: str | None = None
    status: LawStatus = "desconocido"
    # the BOE's análisis: subject headings, and the norms that modify or repeal this one (posteriores) and that
    # it modifies or repeals (anteriores), each {"id_norma", "relacion", "texto"}
    materias: tuple[str, ...] = ()
    referencias: dict = field(default_factory=dict)  # {"anteriores": [...], "posteriores": [...]}
    articles: list[Article] = field(default_factory=list)  # the units as in force (or as of the date read)
    history: list[Article] = field(default_factory=list)  # earlier wordings of them, oldest first per unit

    @property
    def units(self) -> list[Article]:
        """Every wording the law holds: the units in force, then the earlier wordings."""
        return [*self.articles, *self.history]

    @property
    def url(self) -> str:
        return BOE_URL.format(boe_id=self.boe_id)

    def counts(self) -> dict[str, int]:
        """Number of units per kind, in `ARTICLE_KINDS` order, kinds with none left out."""
        counts = {kind: 0 for kind in ARTICLE_KINDS}
        for article in self.articles:
            counts[article.kind] += 1
        return {kind: n for kind, n in counts.items() if n}

    def article(self, article_id: str) -> Article:
        for article in self.articles:
            if article.article_id == article_id:
                return article
        raise KeyError(f"{self.boe_id} has no unit {article_id!r}")

    def metadata(self) -> dict:
        data = asdict(self)
        del data["articles"], data["history"]
        return data

    def to_dict(self) -> dict:
        data = self.metadata()
        data["url"] = self.url
        data["counts"] = self.counts()
        data["articles"] = [article.to_dict() for article in self.articles]
        data["history"] = [article.to_dict() for article in self.history]
        return data


@dataclass(frozen=True)
class Chunk:
    """What gets embedded: a whole article, or one piece of a long one, with a context header."""

    chunk_id: str  # "<boe_id>#<article_id>#<part>"; an earlier wording: "<boe_id>#<article_id>@<date>#<part>"
    boe_id: str
    article_id: str
    part: int
    text: str  # header + body, exactly what the model encodes
    version: str | None = None  # the `version_date` of the earlier wording it comes from; None: the one in force

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()
