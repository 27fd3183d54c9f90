"""Comparing wordings: the word-level diff between the wordings of a unit in force on two dates, and the change
feed (which units got a new wording since a date, and from which norm). Both read the wordings an index holds:
`index --history` keeps every earlier one; without it only the wording in force is there."""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass

from .documents import BOE_URL

# A word with the spaces before it; a line break alone (so a paragraph's end can match on its own)
TOKEN = re.compile(r"\n|[^\S\n]*\S+|\s+")


@dataclass(frozen=True)
class Span:
    """A run of the diff: `op` is equal, delete, insert or replace; `old` is the text it had, `new` the text it has."""

    op: str
    old: str
    new: str


def word_diff(old: str, new: str) -> list[Span]:
    """Word-level spans turning `old` into `new` (whitespace kept, so joining `old` of every span gives `old`).
    An unchanged word between two changes ("El" in "[-El Gobierno habrá-]{+Todas las … El Estado+}") is folded
    into one change, as a reader would mark it, not kept as a stray match."""
    a, b = TOKEN.findall(old), TOKEN.findall(new)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    spans = [Span(op, "".join(a[i1:i2]), "".join(b[j1:j2])) for op, i1, i2, j1, j2 in matcher.get_opcodes()]
    return _fold_stray_matches(spans)


def _words(span: Span) -> int:
    return max(len(span.old.split()), len(span.new.split()))


def _fold_stray_matches(spans: list[Span]) -> list[Span]:
    """Merge each short equal span lying between two changes (one word, or under half the words of the smaller
    change beside it) with them into one change."""
    spans = list(spans)
    i = 1
    while i < len(spans) - 1:
        before, equal, after = spans[i - 1 : i + 2]
        words = len(equal.old.split())
        stray = equal.op == "equal" and before.op != "equal" and after.op != "equal"
        if stray and (words <= 1 or 2 * words < min(_words(before), _words(after))):
            old, new = before.old + equal.old + after.old, before.new + equal.new + after.new
            spans[i - 1 : i + 2] = [Span("replace" if old and new else "delete" if old else "insert", old, new)]
            i = max(1, i - 2)  # the equal span before the merged change may now be a stray one
        else:
            i += 1
    return spans


PLAIN_MARKS = {"equal": "{old}", "delete": "[-{old}-]", "insert": "{{+{new}+}}", "replace": "[-{old}-]{{+{new}+}}"}


def plain_diff(spans: list[dict]) -> str:
    """The spans of a diff as plain text: `[-removed-]{+added+}` (for logs, pipes and agents)."""
    return "".join(PLAIN_MARKS[span["op"]].format(old=span["old"], new=span["new"]) for span in spans)


def norma_url(boe_id: str | None) -> str | None:
    """The BOE's page of the norm that gave a wording."""
    return f"https://www.boe.es/buscar/doc.php?id={boe_id}" if boe_id else None


@dataclass
class Wording:
    """One wording of a unit, as the diff and the feed show it."""

    version_date: str | None
    version_until: str | None
    version_norma: str | None
    url: str
    text: str

    @property
    def norma_url(self) -> str | None:
        return norma_url(self.version_norma)

    def to_dict(self) -> dict:
        return {**asdict(self), "norma_url": self.norma_url}


def law_url(boe_id: str) -> str:
    return BOE_URL.format(boe_id=boe_id)
