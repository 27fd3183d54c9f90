"""Ranking that knows the law: legal priors applied on top of any retriever's ranking of articles, and the law a
question names.

Each candidate keeps its retriever's order as a rank score, `1 / (k + rank)`, multiplied by the priors:

* `operative` — disposiciones transitorias, derogatorias and finales, the preámbulo and anexos count this much
  unless the question asks for them ("disposición transitoria", "entrada en vigor", "anexo" …);
* `repealed` — units or laws that are repealed or expired count this much;
* `rango` — a weak tie-break by the law's rank (Constitución, ley orgánica, ley, real decreto-ley, real decreto,
  orden): up to this fraction more for the highest;
* `law_boost` — the law the question names ("en el Estatuto de los Trabajadores", "según la LPAC", "Ley
  39/2015") counts this much more;
* `diversity` — a hit whose text is this similar (word Jaccard) to a better one of the same law goes after the
  top ten: no run of near-identical units crowds out the rest.

The values live in the manifest (`defaults.priors`) and can be changed per search; `1` (or `0` for diversity)
turns one off.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace

from .folding import fold

NON_OPERATIVE = ("disposicion_transitoria", "disposicion_derogatoria", "disposicion_final", "preambulo", "anexo")
ASKS_FOR_THEM = re.compile(
    r"\b(?:disposicion|disposiciones|transitori\w*|derogatori\w*|preambulo|exposicion de motivos|anexo\w*|"
    r"entrada en vigor|entra en vigor|vigencia)\b"
)
RANGO_ORDER = ("constitucion", "ley organica", "ley", "real decreto-ley", "real decreto legislativo", "real decreto",
               "orden")  # fmt: skip
WORDS = re.compile(r"\w+")
TOP = 10  # the diversity prior moves near-duplicates after this many hits
SAMPLE = 1500  # characters of each unit the diversity prior compares (near-duplicates differ early, if at all)
OFF = {"operative": 1.0, "repealed": 1.0, "rango": 0.0, "law_boost": 1.0, "diversity": 0.0}  # each prior's "off"


@dataclass(frozen=True)
class Priors:
    operative: float = 0.6
    repealed: float = 0.5
    rango: float = 0.02
    law_boost: float = 2.0
    diversity: float = 0.9
    k: int = 10

    @classmethod
    def from_dict(cls, values: dict | None) -> Priors:
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in (values or {}).items() if name in known})

    def to_dict(self) -> dict:
        return asdict(self)

    def without(self, name: str) -> Priors:
        """These priors with one turned off (for ablations)."""
        return replace(self, **{name: OFF[name]})

    @classmethod
    def none(cls, k: int = 10) -> Priors:
        """Every prior off: the retriever's own order."""
        return cls(**OFF, k=k)

    @property
    def active(self) -> bool:
        return self != Priors.none(self.k)


@dataclass
class Candidate:
    """An article a retriever ranked, with what the priors look at."""

    article: int
    score: float
    row: int
    kind: str
    boe_id: str
    rango: str | None
    repealed: bool
    text: str


def rango_level(rango: str | None) -> float:
    """0 for the Constitución … 1 for an orden or an unknown rango."""
    folded = fold(rango or "").replace("-", " ")
    for level, name in enumerate(RANGO_ORDER):
        if folded == name.replace("-", " "):
            return level / (len(RANGO_ORDER) - 1)
    return 1.0


def factor(candidate: Candidate, priors: Priors, asks_for_them: bool, named_law: str | None) -> float:
    value = 1.0
    if candidate.kind in NON_OPERATIVE and not asks_for_them:
        value *= priors.operative
    if candidate.repealed:
        value *= priors.repealed
    if named_law is not None and candidate.boe_id == named_law:
        value *= priors.law_boost
    return value * (1.0 + priors.rango * (1.0 - rango_level(candidate.rango)))


def _similar(a: set[str], b: set[str], threshold: float) -> bool:
    return bool(a and b) and len(a & b) / len(a | b) >= threshold


def apply(candidates: list[Candidate], priors: Priors, query: str, named_law: str | None) -> list[Candidate]:
    """The candidates (in their retriever's order) reordered by the priors."""
    asks = bool(ASKS_FOR_THEM.search(fold(query)))
    scored = sorted(
        enumerate(candidates), key=lambda item: -factor(item[1], priors, asks, named_law) / (priors.k + item[0] + 1)
    )
    ordered = [c for _, c in scored]
    if priors.diversity <= 0:
        return ordered
    kept: list[Candidate] = []
    later: list[Candidate] = []
    words: dict[int, set[str]] = {}
    for candidate in ordered:
        mine = words.setdefault(candidate.article, set(WORDS.findall(candidate.text[:SAMPLE].lower())))
        if len(kept) < TOP and any(
            other.boe_id == candidate.boe_id and _similar(mine, words[other.article], priors.diversity)
            for other in kept
        ):
            later.append(candidate)
        else:
            kept.append(candidate)
    return kept[:TOP] + later + kept[TOP:]
