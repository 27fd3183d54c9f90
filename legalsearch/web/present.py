"""How the web pages present what the index holds, as a Spanish lawyer reads it: dates written out ("5 de marzo
de 2024"), a law by its short citation ("LPAC · Ley 39/2015"), the norm that gave a wording by its title, a law's
table of contents in the law's own order, the neighbours of a unit, and the snippet of a hit: the apartado that
matched, every cut marked with "…"."""

from __future__ import annotations

import re

from ..citations import short_name

MONTHS = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
          "noviembre", "diciembre")  # fmt: skip
ISO_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
CUT = "…"
SNIPPET_CHARS = 700  # an apartado up to this long is shown whole
LEAD_CHARS = 300  # the lead-in of a list ("2. El sector público institucional se integra por:") shown up to this
HEADING = re.compile(r"^(?P<number>[^.]*(?:\.\s?[ºª°])?)\.?\s*(?P<title>.*)$", re.S)
LIST_ITEM = re.compile(r"^(?:[a-zñ]\)|\d+\.[ºª]|[ivx]+\))\s")
NUMBERED = re.compile(r"^(?P<number>(?:Real Decreto Legislativo|Real Decreto-ley|Real Decreto|Ley Orgánica|Ley|"
                      r"Decreto Legislativo|Decreto-ley|Decreto|Orden|Ley Foral)\s+\d+/\d{4})\b")  # fmt: skip


def spanish_date(day: str | None) -> str:
    """ "2024-03-05" → "5 de marzo de 2024"; anything else as given ("" for None)."""
    m = ISO_DAY.match(day or "")
    if not m or not 1 <= int(m[2]) <= 12:
        return day or ""
    return f"{int(m[3])} de {MONTHS[int(m[2]) - 1]} de {m[1]}"


def citation_label(hit) -> str:
    """A hit's short citation, what a lawyer writes first: "Art. 135 CE", "Disposición adicional primera"."""
    return hit.citation.split(" · ", 1)[0]


def _split_heading(heading: str) -> tuple[str, str]:
    """(the unit's number, its title): "Artículo 9. Plazo mínimo." → ("Artículo 9", "Plazo mínimo."); the period
    of "Art." and of an ordinal ("2.º", "1.ª") belong to the number."""
    text = heading.strip()
    abbreviation = "Art. " if text.startswith("Art. ") else ""
    m = HEADING.match(text[len(abbreviation) :])
    return abbreviation + m["number"].strip(), m["title"].strip()


def unit_number(heading: str) -> str:
    """The unit a heading names, without its title: "Artículo 9. Plazo mínimo." → "Artículo 9", "Art. 2.º"."""
    return _split_heading(heading)[0] or heading


def heading_title(heading: str) -> str:
    """What a heading says beyond the unit's number ("Artículo 9. Plazo mínimo." → "Plazo mínimo."), or "" when
    it is only the number ("Artículo 135", "Art. 2.º")."""
    number, title = _split_heading(heading)
    return title if number else ""


def bare_title(title: str | None) -> str:
    """A title without its final period, to be followed by something ("Constitución Española (CE)")."""
    return (title or "").strip().rstrip(".").rstrip()


def law_name(law: dict, limit: int = 48) -> str:
    """A law as the search form's list names it, short enough for a phone: its short name and number where it
    has them ("LPAC · Ley 39/2015"), else its number, else its title cut at a word ("…"), else its BOE id."""
    title = bare_title(law.get("title"))
    if title == law["boe_id"]:
        title = ""
    number = NUMBERED.match(title)
    short = short_name(law["boe_id"])
    name = number["number"] if number else title
    if len(name) > limit:
        name = name[: limit - 1].rsplit(" ", 1)[0] + CUT
    if short:
        return f"{short} · {name}" if name else short
    return name or law["boe_id"]


def article_for(name: str) -> str:
    """The article a sentence puts before a norm's name: "la " (Ley, Orden, Reforma …), "el " (Real Decreto,
    Acuerdo …), or "" for a name of another kind (a BOE id)."""
    first = name.split(" ", 1)[0]
    if first in ("Ley", "Reforma", "Orden", "Resolución", "Instrucción", "Circular", "Directiva", "Decisión"):
        return "la "
    if first in ("Real", "Decreto", "Acuerdo", "Reglamento", "Instrumento"):
        return "el "
    return ""


def norm_names(law: dict | None, titles: dict[str, str]) -> dict[str, str]:
    """The names of the norms that changed `law`, by BOE id: the title of each one the index holds, else the name
    the BOE's análisis gives it ("el art. 135, por Reforma de 27 de septiembre de 2011" → "Reforma de 27 de
    septiembre de 2011"). A norm named nowhere is left out (the page then shows its BOE id)."""
    names: dict[str, str] = {}
    for reference in ((law or {}).get("referencias") or {}).get("posteriores", []):
        said = reference.get("texto") or ""
        if reference.get("id_norma") and ", por " in said:
            names[reference["id_norma"]] = said.rsplit(", por ", 1)[1].strip().rstrip(".")
    for boe_id, title in titles.items():
        if bare_title(title) and title != boe_id:
            names[boe_id] = bare_title(title)
    return names


def contents(units: list[dict]) -> list[dict]:
    """A law's table of contents in the law's own order: a list of entries, each {"unit": unit} or {"title":
    heading, "entries": [...]}, nested by each unit's path (Título › Capítulo …). A unit outside any heading
    (the preámbulo, a disposición) stands where the law puts it, not gathered at the top."""
    root: list[dict] = []
    open_nodes: list[dict] = []  # the headings the previous unit was under, outermost first
    for unit in units:
        path = unit["path"]
        depth = 0
        while depth < min(len(open_nodes), len(path)) and open_nodes[depth]["title"] == path[depth]:
            depth += 1
        del open_nodes[depth:]
        for heading in path[depth:]:
            node = {"title": heading, "entries": []}
            (open_nodes[-1]["entries"] if open_nodes else root).append(node)
            open_nodes.append(node)
        (open_nodes[-1]["entries"] if open_nodes else root).append({"unit": unit})
    return root


def neighbours(units: list[dict], article_id: str) -> tuple[dict | None, dict | None]:
    """The units before and after `article_id` in the law's order (None at either end, or when it is not there)."""
    ids = [unit["article_id"] for unit in units]
    if article_id not in ids:
        return None, None
    i = ids.index(article_id)
    return (units[i - 1] if i > 0 else None), (units[i + 1] if i + 1 < len(units) else None)


# --- snippets -------------------------------------------------------------------------------------------------


def _matches(paragraph: str, wanted: set[str]) -> list[re.Match]:
    from ..lexical import stem

    return [m for m in re.finditer(r"\w+", paragraph) if len(m[0]) > 2 and stem(m[0]) in wanted]


def _window(paragraph: str, around: int, limit: int) -> str:
    """At most `limit` characters of `paragraph` around position `around`, cut at spaces, each cut marked."""
    if len(paragraph) <= limit:
        return paragraph
    start = max(0, min(around - limit // 4, len(paragraph) - limit))
    end = min(len(paragraph), start + limit)
    if start > 0:  # begin at the next word
        space = paragraph.find(" ", start)
        start = space + 1 if 0 <= space < around else start
    if end < len(paragraph):  # end at the last whole word
        space = paragraph.rfind(" ", start, end)
        end = space if space > start else end
    return f"{CUT if start > 0 else ''}{paragraph[start:end].strip()}{CUT if end < len(paragraph) else ''}"


def _matched_span(text: str, matched_text: str) -> tuple[int, int]:
    """Where the chunk that matched lies in the unit's text (its header line dropped); the whole text if unsure."""
    body = matched_text.split("\n", 1)[1] if "\n" in matched_text else matched_text
    start = text.find(body[:120].strip()) if body.strip() else -1
    return (start, start + len(body)) if start >= 0 else (0, len(text))


def snippet(text: str, matched_text: str, query: str) -> list[str]:
    """The lines of a hit's snippet: the apartado of the chunk that matched holding most of the question's words
    (with its list's lead-in when it is an item of a list), cut to `SNIPPET_CHARS` around the first word
    matched. A line "…" stands for the paragraphs left out before or after; a cut inside a paragraph is marked
    "…" where it is."""
    from ..lexical import stems

    paragraphs = text.split("\n")
    wanted = stems(query)
    start, end = _matched_span(text, matched_text)
    candidates, offset = [], 0
    for i, paragraph in enumerate(paragraphs):
        if offset < end and offset + len(paragraph) >= start:
            candidates.append(i)
        offset += len(paragraph) + 1
    candidates = candidates or [0]
    scored = [(len({m[0].lower() for m in _matches(paragraphs[i], wanted)}), -i) for i in candidates]
    best = -max(scored)[1]
    shown = [best]
    if LIST_ITEM.match(paragraphs[best]):
        lead = next((j for j in range(best - 1, -1, -1) if not LIST_ITEM.match(paragraphs[j])), None)
        if lead is not None and len(paragraphs[lead]) <= LEAD_CHARS:
            shown.insert(0, lead)
    lines: list[str] = []
    previous = -1
    for i in shown:
        found = _matches(paragraphs[i], wanted)
        line = _window(paragraphs[i], found[0].start() if found else 0, SNIPPET_CHARS)
        if i > previous + 1 and not line.startswith(CUT):  # paragraphs left out, not already marked by a cut
            lines.append(CUT)
        lines.append(line)
        previous = i
    if previous < len(paragraphs) - 1 and not lines[-1].endswith(CUT):
        lines.append(CUT)
    return lines
