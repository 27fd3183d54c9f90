"""Parsing truths over the laws only ../shared/corpora holds (the tests check the same on corpora/sample).

Each law's own count of numbered articles, a Libro in the path, the BOE's own anchors, repealed ranges and single
repealed articles, a diario ÍNDICE that is never a unit, quoted articles of amended laws that start no unit.
Prints one line per check (ok / FAILED) and the parse time; exits 1 when a check fails.

    python bench/corpus_truths.py [--corpora ../shared/corpora]
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import SHARED

from legalsearch.sources import parse_file

NUMBERED_ARTICLES = {
    "pdf/BOE-A-2015-10566.pdf": 158,  # Ley 40/2015
    "xml/BOE-A-2017-12902.xml": 347,  # Ley 9/2017 de Contratos del Sector Público
    "pdf/BOE-A-1889-4763.pdf": 1976,  # Código Civil
    "pdf/BOE-A-1995-25444.pdf": 639,  # Código Penal
    "pdf/BOE-A-2000-323.pdf": 827,  # Ley de Enjuiciamiento Civil
    "html/BOE-A-1992-28740.html": 171,  # Ley del IVA
}
REPEALED = [
    ("pdf/BOE-A-1889-4763.pdf", "a127-a130"),  # Código Civil
    ("pdf/BOE-A-1995-25444.pdf", "a617-a622"),  # Código Penal, Libro III
    ("html/BOE-A-1992-28740.html", "a163bis-a163quater"),  # LIVA
    ("pdf/BOE-A-1995-25444.pdf", "a309"),  # a single "(Derogado)"
]


def numbered(law) -> set[int]:
    numbers: set[int] = set()
    for article in law.articles:
        if article.kind != "articulo" or not article.number:
            continue
        if m := re.fullmatch(r"(\d+) a (\d+)", article.number):
            numbers.update(range(int(m[1]), int(m[2]) + 1))
        elif article.number.isdigit():
            numbers.add(int(article.number))
    return numbers


def checks(law: Callable[[str], object]) -> list[tuple[str, Callable[[], bool]]]:
    found: list[tuple[str, Callable[[], bool]]] = []
    for relative, expected in NUMBERED_ARTICLES.items():
        found.append((f"{relative}: articles 1..{expected}", functools.partial(_count, law, relative, expected)))
    for relative, unit in REPEALED:
        found.append((f"{relative}: {unit} kept, derogado", functools.partial(_repealed, law, relative, unit)))
    found += [
        ("Código Civil a1902: under LIBRO CUARTO", lambda: law("pdf/BOE-A-1889-4763.pdf").article("a1902").path[0]
         .startswith("LIBRO CUARTO")),
        ("IVA a140quater: the BOE's anchor a140cuarter", lambda: law("html/BOE-A-1992-28740.html")
         .article("a140quater").anchor == "a140cuarter"),
        ("IVA a20bis: the BOE's anchor a2-2", lambda: law("html/BOE-A-1992-28740.html").article("a20bis").url
         .endswith("#a2-2")),
        ("LCSP: no unit line starts with 'Índice'", lambda: not any(
            line.startswith("Índice") for a in law("xml/BOE-A-2017-12902.xml").articles
            for line in a.text.split("\n"))),
        ("Ley 40/2015: the Ley del Gobierno's quoted art. 22 starts no unit",
         lambda: sum(a.number == "22" for a in law("pdf/BOE-A-2015-10566.pdf").articles) == 1),
    ]  # fmt: skip
    return found


def _count(law, relative: str, expected: int) -> bool:
    numbers = numbered(law(relative))
    return numbers == set(range(1, expected + 1))


def _repealed(law, relative: str, unit: str) -> bool:
    article = law(relative).article(unit)
    return article is not None and article.status == "derogado" and article.heading.startswith("Art")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", type=Path, default=SHARED / "corpora")
    args = parser.parse_args()
    if not (args.corpora / "MANIFEST.tsv").exists():
        print(f"no corpus at {args.corpora}: give --corpora", file=sys.stderr)
        return 2
    start = time.perf_counter()
    law = functools.cache(lambda relative: parse_file(args.corpora / relative))
    failed = 0
    for name, check in checks(law):
        ok = check()
        failed += not ok
        print(f"{'ok' if ok else 'FAILED':6} {name}")
    print(f"{failed} failed; parsed in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
