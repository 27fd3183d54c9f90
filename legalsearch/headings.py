"""The headings of Spanish laws: article and disposición headings ("Artículo 14 bis.", "Disposición adicional
primera.", "Artículos 127 a 130."), ordinals and suffixes, and the unit ids they give ("a14bis", "da1", "a127-a130").
The parsers segment laws by them and the query side reads citations by them, so neither imports the other."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .documents import ArticleKind
from .folding import fold

# --- ordinals -------------------------------------------------------------------------------------------

_ORDINAL_STEMS = {
    "primer": 1, "segund": 2, "tercer": 3, "cuart": 4, "quint": 5, "sext": 6, "septim": 7, "octav": 8,
    "ctav": 8,  # "decimoctava": the "o" of "decimo" is shared
    "noven": 9, "decim": 10, "undecim": 11, "duodecim": 12, "vigesim": 20, "trigesim": 30, "cuadragesim": 40,
    "quincuagesim": 50, "sexagesim": 60, "septuagesim": 70, "octogesim": 80, "nonagesim": 90, "centesim": 100,
    "unic": 0,
}  # fmt: skip
_STEMS_LONGEST_FIRST = sorted(_ORDINAL_STEMS, key=len, reverse=True)


def ordinal_value(word: str) -> int | None:
    """Value of a Spanish ordinal as used to number disposiciones: "primera" → 1, "vigésima tercera" → 23,
    "decimoctava" → 18, "única" → 0. None when `word` is not an ordinal."""
    key = re.sub(r"[\s\-]", "", fold(word))
    total, matched = 0, False
    while key:
        stem = next((s for s in _STEMS_LONGEST_FIRST if key.startswith(s)), None)
        if stem is None:
            return None
        total += _ORDINAL_STEMS[stem]
        matched = True
        key = key[len(stem) :]
        if key[:1] in ("o", "a"):
            key = key[1:]
    return total if matched else None


_SUFFIX = r"(?:bis|ter|qu[aá]ter|cuarter|quinque|[a-z]*ies)"
_ORDINAL_STEM = (
    r"(?:primer|segund|tercer|cuart|quint|sext|s[eé]ptim|o?ctav|noven|d[eé]cim|und[eé]cim|duod[eé]cim|"
    r"vig[eé]sim|trig[eé]sim|cuadrag[eé]sim|quincuag[eé]sim|sexag[eé]sim|septuag[eé]sim|octog[eé]sim|"
    r"nonag[eé]sim|cent[eé]sim)"
)
_ORDINAL_WORD = rf"(?:[úu]nic[oa]|{_ORDINAL_STEM}[oa](?:\s?{_ORDINAL_STEM}[oa])?)"
ARTICLE_HEADING = re.compile(
    rf"^(?:Art[íi]culo|Art\.)\s*(?P<num>\d+|{_ORDINAL_WORD})(?:\s*\.?\s*[ºo°])?(?:[\s\-]+(?P<suf>{_SUFFIX}))?"
    r"(?:\s+(?P<letter>[a-z])\))?"
    r"(?=[\s.:\-–—]|$)\s*(?:[.:\-–—]\s*)?(?P<title>.*)$",
    re.IGNORECASE,
)
DISPOSITION_HEADING = re.compile(
    rf"^Disposici[oó]n\s+(?P<kind>adicional|transitoria|derogatoria|final)(?:\s+(?P<ord>{_ORDINAL_WORD}|\d+))?"
    rf"(?:\s+(?P<suf>{_SUFFIX}))?(?=[\s.:\-–—]|$)\s*(?:[.:\-–—]\s*)?(?P<title>.*)$",
    re.IGNORECASE,
)
# Capital "D": "disposiciones finales." at the start of a line is a sentence wrapped there, not a heading
GROUP_HEADING = re.compile(
    r"^(?-i:D)ISPOSICI[OÓ]N(?:ES)?\s+(?P<kind>ADICIONAL|TRANSITORIA|DEROGATORIA|FINAL)(?:E?S)?\.?$", re.IGNORECASE
)
ORDINAL_HEADING = re.compile(rf"^(?P<ord>{_ORDINAL_WORD})(?:\s+(?P<suf>{_SUFFIX}))?\s*\.\s*(?P<title>.*)$", re.I)
ANEXO_HEADING = re.compile(r"^ANEXO(?:\s+(?P<num>[IVXLC]+|\d+|[ÚU]NICO))?\b\.?\s*(?P<title>.*)$", re.IGNORECASE)

_DISPOSITION_PREFIX = {"adicional": "da", "transitoria": "dt", "derogatoria": "dd", "final": "df"}
_DISPOSITION_KIND: dict[str, ArticleKind] = {
    "adicional": "disposicion_adicional",
    "transitoria": "disposicion_transitoria",
    "derogatoria": "disposicion_derogatoria",
    "final": "disposicion_final",
}
_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}


def roman_value(text: str) -> int:
    total = 0
    for a, b in zip(text, text[1:] + " ", strict=True):
        value = _ROMAN[a]
        total += -value if b in _ROMAN and _ROMAN[b] > value else value
    return total


def _ordinal_id(word: str | None) -> str:
    if not word:
        return ""
    if word.isdigit():
        return word
    value = ordinal_value(word)
    if value is None:
        return fold(re.sub(r"\s+", "", word))
    return "u" if value == 0 else str(value)


_SUFFIX_SPELLINGS = {"cuarter": "quater", "quinque": "quinquies"}  # misspellings found in BOE headings


def normal_suffix(suffix: str | None) -> str:
    folded = fold(suffix or "")
    return _SUFFIX_SPELLINGS.get(folded, folded)


def article_id_for(number: str, suffix: str | None = None) -> str:
    """The BOE anchor of a numbered article: `a14`, `a14bis`, `au` (único)."""
    suffix = normal_suffix(suffix)
    if number.isdigit():
        return f"a{int(number)}{suffix}"
    value = ordinal_value(number)
    if value == 0:
        return f"au{suffix}"
    return f"a{value}{suffix}" if value else f"a{fold(number)}{suffix}"


@dataclass
class HeadingInfo:
    kind: ArticleKind
    article_id: str
    number: str | None


def parse_heading(text: str, group: str | None = None) -> HeadingInfo | None:
    """Recognise an article or disposición heading; `group` is the disposición kind of an enclosing
    "DISPOSICIONES ADICIONALES" heading, under which headings are bare ordinals ("Primera.")."""
    text = text.lstrip()
    if m := ARTICLE_RANGE.match(text):  # "Artículos 127 a 130. (Derogados)": one unit for the range
        first, last = article_id_for(m["first"], m["fsuf"]), article_id_for(m["last"], m["lsuf"])
        number = " a ".join(
            f"{n} {normal_suffix(x)}".strip() for n, x in ((m["first"], m["fsuf"]), (m["last"], m["lsuf"]))
        )
        return HeadingInfo("articulo", f"{first}-{last}", number)
    if m := ARTICLE_HEADING.match(text):
        num, suf, letter = m["num"], m["suf"], m["letter"]
        number = f"{fold(num) if not num.isdigit() else num}{' ' + normal_suffix(suf) if suf else ''}"
        number = number.replace("unico", "único") + (f" {letter})" if letter else "")
        return HeadingInfo("articulo", article_id_for(num, suf) + (letter or ""), number)
    if m := DISPOSITION_HEADING.match(text):
        kind = fold(m["kind"])
        ident = _DISPOSITION_PREFIX[kind] + _ordinal_id(m["ord"]) + fold(m["suf"] or "")
        return HeadingInfo(_DISPOSITION_KIND[kind], ident, m["ord"].lower() if m["ord"] else None)
    if group and (m := ORDINAL_HEADING.match(text)):
        ident = _DISPOSITION_PREFIX[group] + _ordinal_id(m["ord"]) + fold(m["suf"] or "")
        return HeadingInfo(_DISPOSITION_KIND[group], ident, m["ord"].lower())
    return None


ARTICLE_RANGE = re.compile(
    rf"^Art[íi]culos?\s+(?P<first>\d+)(?:\s+(?P<fsuf>{_SUFFIX}))?\s+(?:a|al|y)\s+(?P<last>\d+)(?:\s+(?P<lsuf>{_SUFFIX}))?"
    r"\b\s*\.?\s*(?P<title>.*)$",
    re.IGNORECASE,
)


REPEALED_TEXT = re.compile(
    r"^[(\[]?\s*(?:derogad[oa]s?|suprimid[oa]s?|sin\s+contenido|anulad[oa]s?|dejad[oa]s?\s+sin\s+(?:efecto|contenido))"
    r"(?:\s+(?:por|en\s+virtud\s+de)\b[^)\]]*)?\s*[)\]]?\.?$",
    re.IGNORECASE,
)
REPEALED_HEADING = re.compile(r"[(\[]\s*(?:derogad[oa]s?|suprimid[oa]s?|sin\s+contenido|anulad[oa]s?)\b", re.IGNORECASE)


def is_repealed(heading: str, text: str) -> bool:
    """Whether a unit is marked repealed by the BOE's own words: a body that is only "(Derogado)", "(Sin
    contenido)", "Suprimido por …" — or such a mark in its heading ("Artículo 74. (Derogado)")."""
    return bool(REPEALED_TEXT.match(text.strip()) or (REPEALED_HEADING.search(heading) and len(text) < 200))
