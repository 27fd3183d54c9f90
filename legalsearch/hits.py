"""A search result as every interface shows it: `Hit` (one unit, with its citation, URL, wording dates and how
well it answers) and `cite`, how a lawyer cites a unit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .documents import law_label


def cite(unit: dict) -> str:
    """How a lawyer cites a unit (a hit's or `LegalSearch.article`'s fields): "Art. 14 CE · Constitución Española
    (BOE-A-1978-31229)"; a repealed unit adds ", derogado" (with its end date where known); an earlier wording the
    dates it was in force: "…, redacción vigente del 1978-12-29 al 2011-09-27"."""
    number = unit.get("number")
    if unit["kind"] == "articulo" and number:
        label = f"Arts. {number}" if " a " in number else f"Art. {number}"
    else:
        label = unit["heading"].split(".")[0]
    if unit.get("short_name"):
        label += f" {unit['short_name']}"
    cited = f"{label} · {law_label(unit['law_title'], unit['boe_id'])}"
    if unit.get("status") == "derogado":
        cited += f", derogado desde el {unit['version_until']}" if unit.get("version_until") else ", derogado"
    elif unit.get("version_until"):
        cited += f", redacción vigente del {unit['version_date']} al {unit['version_until']}"
    return cited


@dataclass
class Hit:
    """One article in a result list. `to_dict()` is the JSON of `ask --json` and of the HTTP API."""

    rank: int
    score: float
    boe_id: str
    law_title: str
    article_id: str
    kind: str
    number: str | None
    heading: str
    path: list[str]
    url: str
    text: str
    matched_text: str  # the chunk that matched best (a part of `text` for long articles), header included
    chunk_part: int
    match: str = "dense"  # how it was found: a search mode, or "cita" when the query cites this article
    version_date: str | None = None  # the wording shown came into force this day (sources with versions)
    version_until: str | None = None  # … and stopped being in force this day (replaced, or expired); None: open
    status: str = "vigente"  # "derogado": the unit (or its whole law) is repealed or expired
    short_name: str | None = None  # the law's usual abbreviation ("ET"), where it has one
    modified_by: str | None = None  # the BOE id of the norm that gave the wording shown, when not the law itself
    consolidated: bool = True  # False: the text as published in the daily BOE, not yet consolidated
    # How well it answers (relevance.py), the same scale in every mode: `score` orders hits of one mode; these
    # say whether a hit is any good. relevance 0…1, good_match from 0.5; no hit with good_match: no good match.
    relevance: float = 0.0
    good_match: bool = False
    cosine: float | None = None  # the question's cosine with the passage that matched (None: not embedded)
    matched_terms: list[str] = field(default_factory=list)  # the question's words the unit's text holds

    @property
    def citation(self) -> str:
        """ "Art. 14 CE · Constitución Española (BOE-A-1978-31229)" (`cite`)."""
        return cite(asdict(self))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["citation"] = self.citation
        return data
