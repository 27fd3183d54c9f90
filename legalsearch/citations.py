"""Queries that cite an article: "artículo 14 CE", "art. 24.2 de la Constitución", "artículo 1902 del Código
Civil", "art. 21 Ley 39/2015". The law is resolved against the laws an index holds: common abbreviations, the
words of its title, or its number ("Ley 39/2015", "Real Decreto 203/2021")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .folding import fold
from .headings import _SUFFIX, parse_heading

# Abbreviations lawyers use, folded; each maps to the law's BOE id.
ALIASES: dict[str, str] = {
    "ce": "BOE-A-1978-31229",
    "constitucion": "BOE-A-1978-31229",
    "constitucion espanola": "BOE-A-1978-31229",
    "cc": "BOE-A-1889-4763",
    "codigo civil": "BOE-A-1889-4763",
    "cp": "BOE-A-1995-25444",
    "codigo penal": "BOE-A-1995-25444",
    "ccom": "BOE-A-1885-6627",
    "codigo de comercio": "BOE-A-1885-6627",
    "lec": "BOE-A-2000-323",
    "ley de enjuiciamiento civil": "BOE-A-2000-323",
    "lecrim": "BOE-A-1882-6036",
    "ley de enjuiciamiento criminal": "BOE-A-1882-6036",
    "et": "BOE-A-2015-11430",
    "estatuto de los trabajadores": "BOE-A-2015-11430",
    "lpac": "BOE-A-2015-10565",
    "lpacap": "BOE-A-2015-10565",
    "lrjsp": "BOE-A-2015-10566",
    "lopj": "BOE-A-1985-12666",
    "ljca": "BOE-A-1998-16718",
    "lrjs": "BOE-A-2011-15936",
    "lgt": "BOE-A-2003-23186",
    "lirpf": "BOE-A-2006-20764",
    "liva": "BOE-A-1992-28740",
    "lis": "BOE-A-2014-12328",
    "lau": "BOE-A-1994-26003",
    "lph": "BOE-A-1960-10906",
    "lh": "BOE-A-1946-2453",
    "lcsp": "BOE-A-2017-12902",
    "lgss": "BOE-A-2015-11724",
    "trebep": "BOE-A-2015-11719",
    "ebep": "BOE-A-2015-11719",
    "lsc": "BOE-A-2010-10544",
    "lopdgdd": "BOE-A-2018-16673",
    "trlgdcu": "BOE-A-2007-20555",
    "lprl": "BOE-A-1995-24292",
}
# The short name lawyers write in a citation ("art. 38 ET"), per BOE id.
SHORT_NAMES: dict[str, str] = {
    "BOE-A-1978-31229": "CE", "BOE-A-1889-4763": "CC", "BOE-A-1995-25444": "CP", "BOE-A-1885-6627": "CCom",
    "BOE-A-2000-323": "LEC", "BOE-A-1882-6036": "LECrim", "BOE-A-2015-11430": "ET", "BOE-A-2015-10565": "LPAC",
    "BOE-A-2015-10566": "LRJSP", "BOE-A-1985-12666": "LOPJ", "BOE-A-1998-16718": "LJCA", "BOE-A-2011-15936": "LRJS",
    "BOE-A-2003-23186": "LGT", "BOE-A-2006-20764": "LIRPF", "BOE-A-1992-28740": "LIVA", "BOE-A-2014-12328": "LIS",
    "BOE-A-1994-26003": "LAU", "BOE-A-1960-10906": "LPH", "BOE-A-1946-2453": "LH", "BOE-A-2017-12902": "LCSP",
    "BOE-A-2015-11724": "LGSS", "BOE-A-2015-11719": "TREBEP", "BOE-A-2010-10544": "LSC",
    "BOE-A-2018-16673": "LOPDGDD", "BOE-A-2007-20555": "TRLGDCU", "BOE-A-1995-24292": "LPRL",
}  # fmt: skip
# Order of the Latin suffixes of inserted articles: 163 < 163 bis < 163 ter < 163 quáter < 163 quinquies …
SUFFIX_ORDER = ("", "bis", "ter", "quater", "quinquies", "sexies", "septies", "octies", "nonies", "decies")
_ARTICLE_KEY = re.compile(r"^a(?P<num>\d+)(?P<suf>[a-z]*)$")


def short_name(boe_id: str) -> str | None:
    """ "ET" for BOE-A-2015-11430: the abbreviation lawyers cite the law by, where one is in common use."""
    return SHORT_NAMES.get(boe_id)


def _article_key(article_id: str) -> tuple[int, int, str] | None:
    m = _ARTICLE_KEY.match(article_id)
    if m is None:
        return None
    suffix = m["suf"]
    rank = SUFFIX_ORDER.index(suffix) if suffix in SUFFIX_ORDER else len(SUFFIX_ORDER)
    return int(m["num"]), rank, suffix


def range_holds(range_id: str, article_id: str) -> bool:
    """Whether the unit of a range of articles ("a127-a130", "a163bis-a163quater") covers `article_id`."""
    first, _, last = range_id.partition("-")
    low, high, key = _article_key(first), _article_key(last), _article_key(article_id)
    return None not in (low, high, key) and low <= key <= high


CITATION = re.compile(
    rf"\bart(?:[íi]culo|\.)?\s*(?P<num>\d+)(?:\s*(?P<suf>{_SUFFIX})\b)?(?:\.\d+(?:\.[a-z0-9]+)*)?"
    r"(?:\s*,?\s*(?:de\s+la|del|de\s+los|de)?\s*(?P<law>[^?¿!¡;]*))?",
    re.IGNORECASE,
)
NUMBERED_LAW = re.compile(
    r"(?P<type>ley\s+organica|ley|real\s+decreto[\s-]+ley|real\s+decreto\s+legislativo|real\s+decreto|rdl|rdleg|rd|lo|"
    r"orden)\s*(?P<number>\d+/\d{4})"
)
_TYPES = {
    "lo": "ley organica", "rd": "real decreto", "rdl": "real decreto-ley", "rdleg": "real decreto legislativo",
}  # fmt: skip


@dataclass(frozen=True)
class Citation:
    boe_id: str
    article_id: str


def _normal_type(kind: str) -> str:
    kind = re.sub(r"[\s-]+", " ", kind)
    return _TYPES.get(kind, kind).replace("real decreto ley", "real decreto-ley")


def resolve_law(text: str, titles: dict[str, str]) -> str | None:
    """The BOE id of the law `text` names, among `titles` (boe_id → title) of an index; None if unsure."""
    phrase = re.sub(r"\s+", " ", fold(text)).strip(" .,:")
    if not phrase:
        return None
    if m := NUMBERED_LAW.search(phrase):
        kind, number = _normal_type(m["type"]), m["number"]
        found = [
            b for b, t in titles.items() if re.search(rf"\b{re.escape(number)}\b", t) and fold(t).startswith(kind)
        ] or [b for b, t in titles.items() if re.search(rf"\b{re.escape(number)}\b", t)]
        return found[0] if len(found) == 1 else None
    words = phrase.split()
    for length in range(min(len(words), 5), 0, -1):  # the longest known name at the start of the phrase
        alias = ALIASES.get(" ".join(words[:length]))
        if alias in titles:
            return alias
    if len(words) >= 2:
        found = [b for b, t in titles.items() if phrase in fold(t)]
        if len(found) == 1:
            return found[0]
    return None


NAMED_YEAR = re.compile(
    r"\b(?P<before>antes\s+de(?:\s+la\s+reforma)?(?:\s+de)?|en(?:\s+el\s+ano)?|durante(?:\s+el\s+ano)?|"
    r"a\s+fecha\s+de|vigente\s+en|en\s+vigor\s+en)\s+(?P<year>1[89]\d\d|20\d\d)\b(?!\s*/)"
)


def named_day(query: str) -> str | None:
    """The day a question asks about, from the year it names: "en 2010" → the end of 2010, "antes de la reforma
    de 2011" → the end of 2010. None when it names no year that way (a law's number such as "Ley 39/2015" or
    the date in a law's title is no such year)."""
    m = NAMED_YEAR.search(fold(query))
    if m is None:
        return None
    year = int(m["year"]) - (1 if m["before"].startswith("antes") else 0)
    return f"{year}-12-31"


def named_law(query: str, titles: dict[str, str]) -> str | None:
    """The BOE id of the one law of an index a question names anywhere ("en el Estatuto de los Trabajadores",
    "según la LPAC", "Ley 39/2015"), by its number or a known name; None when it names none, or several."""
    phrase = re.sub(r"\s+", " ", fold(query))
    found: set[str] = set()
    for m in NUMBERED_LAW.finditer(phrase):
        law = resolve_law(m.group(0), titles)
        if law is not None:
            found.add(law)
    words = re.findall(r"[a-z0-9]+", phrase)
    for i in range(len(words)):
        for length in range(min(len(words) - i, 5), 0, -1):
            alias = ALIASES.get(" ".join(words[i : i + length]))
            if alias in titles:
                found.add(alias)
                break
    return found.pop() if len(found) == 1 else None


# What a lawyer types for a unit: "56", "56 bis", "art. 56", "Art 56.2", "artículo 56", "a56", "disposición
# adicional primera", "DA 1ª", "da1"
_BARE_NUMBER = re.compile(
    rf"^(?P<num>\d+)(?:\s*\.?\s*[ºo°])?(?:[\s\-]*(?P<suf>{_SUFFIX}))?(?:\.\d+[\w.]*)?$", re.IGNORECASE
)
_ARTICLE_WORD = re.compile(r"^(?:art[íi]culos?|arts?)\s*\.?\s*", re.IGNORECASE)
_SHORT_DISPOSITION = re.compile(r"^d\.?\s*(?P<kind>[atdf])\.?\s*(?P<ord>\d+)\s*[ªa]?$", re.IGNORECASE)
_UNIT_ID = re.compile(r"^[a-z]+[0-9a-z]*(?:-[a-z]+[0-9a-z]*)?$")  # an anchor as the BOE writes it: a14, da1, a127-a130


def unit_id(text: str) -> str | None:
    """The BOE anchor of the unit `text` names, as a lawyer would type it: "56", "56 bis", "art. 56", "Art. 56.2",
    "artículo 56", "a56", "disposición adicional primera", "DA 1ª", "da1" (→ a56, a56bis, da1 …); None when it
    names none."""
    text = " ".join(text.split()).strip(" .,;:")
    if not text:
        return None
    if _UNIT_ID.match(text.lower()) and not _BARE_NUMBER.match(text):
        return text.lower()
    if m := _SHORT_DISPOSITION.match(text):
        return {"a": "da", "t": "dt", "d": "dd", "f": "df"}[m["kind"].lower()] + str(int(m["ord"]))
    bare = _ARTICLE_WORD.sub("", text)
    if m := _BARE_NUMBER.match(bare):
        text = f"Artículo {m['num']}{' ' + m['suf'] if m['suf'] else ''}"
    elif bare != text:
        text = f"Artículo {bare}"
    info = parse_heading(text + ".")
    return info.article_id if info is not None else None


def law_id(text: str, titles: dict[str, str]) -> str | None:
    """The BOE id of the law `text` names among `titles` (boe_id → title) of an index: its BOE id in any case,
    the short name lawyers cite it by ("ET", "CE", "LPAC", "LAU"), its number ("Ley 29/1994") or its title's
    words; None when unsure."""
    text = text.strip()
    if text in titles:
        return text
    if text.upper() in titles:
        return text.upper()
    return resolve_law(text, titles)


def find_citation(query: str, titles: dict[str, str]) -> Citation | None:
    """The article a query cites, when it names one of an index's laws (or the index holds one law)."""
    for m in CITATION.finditer(query):
        info = parse_heading(f"Artículo {m['num']}{' ' + m['suf'] if m['suf'] else ''}.")
        if info is None:
            continue
        boe_id = resolve_law(m["law"] or "", titles)
        if boe_id is None and len(titles) == 1:
            boe_id = next(iter(titles))
        if boe_id is not None:
            return Citation(boe_id, info.article_id)
    return None
