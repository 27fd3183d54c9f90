"""Everyday Spanish bridged to the words of the law: a lexicon of general legal vocabulary
(`data/lexicon.tsv`: "inquilino" → "arrendatario", "paro" → "desempleo; prestación por desempleo") used to
expand the lexical side of a query with weighted legal terms."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from .folding import fold

LEXICON_FILE = Path(__file__).resolve().parent / "data" / "lexicon.tsv"


@cache
def entries(path: Path = LEXICON_FILE) -> dict[str, tuple[str, ...]]:
    """Folded everyday words → the legal terms they stand for, longest keys first."""
    table: dict[str, tuple[str, ...]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, terms = line.partition("\t")
        table[" ".join(fold(key).split())] = tuple(t.strip() for t in terms.split(";") if t.strip())
    return dict(sorted(table.items(), key=lambda item: -len(item[0])))


def expansion(query: str) -> str:
    """The legal terms a query's everyday words stand for (words the query already has left out), as one text
    for the lexical index; "" when none. A word matched by a longer key is not matched again by a shorter one."""
    text = " " + " ".join(re.findall(r"\w+", fold(query))) + " "
    found: list[str] = []
    for key, terms in entries().items():
        if f" {key} " in text:
            text = text.replace(f" {key} ", " | ")
            found += [t for t in terms if fold(t) not in fold(query)]
    return " ; ".join(dict.fromkeys(found))
