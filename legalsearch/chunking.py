"""Articles → chunks. One chunk per article; an article over the token budget is split at apartado
boundaries (numbered paragraphs, lettered items), never inside a sentence, and every piece starts with a short
context header (law › path › heading) so it stands alone."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .documents import Article, Chunk, Law

DEFAULT_MAX_TOKENS = 512
# An apartado starts a paragraph: "1.", "2 bis.", "a)", "1.º", "Uno.", "Primero." …
APARTADO = re.compile(
    r"^(?:\d+(?:\s?bis|\s?ter)?\.(?!\d)|\d+\.?[ºª]|[a-zñ]\)|[A-Z]\)|(?:Uno|Dos|Tres|Cuatro|Cinco|Seis|Siete|Ocho|"
    r"Nueve|Diez|Once|Doce|Primer[oa]|Segund[oa]|Tercer[oa]|Cuart[oa]|Quint[oa])\.)\s"
)
# a sentence ends at ". ; :" after a word (not after "1." or "a)"), before a capital, a number or a quote
SENTENCE_END = re.compile(r"(?<=[a-záéíóúñ»\")\]]{2}[.;:])\s+(?=[«\"(A-ZÁÉÍÓÚÑ0-9])")

TokenCounter = Callable[[Sequence[str]], list[int]]


def short_title(title: str, limit: int = 110) -> str:
    title = title.rstrip(".")
    return title if len(title) <= limit else title[: limit - 1].rsplit(" ", 1)[0] + "…"


def context_header(law: Law, article: Article) -> str:
    return " › ".join([short_title(law.title), *article.path, article.heading])


def _pieces(paragraphs: list[str], sizes: list[int], budget: int) -> list[list[int]]:
    """Group consecutive paragraphs into pieces of at most `budget` tokens, preferring to start a piece at an
    apartado; a paragraph that alone exceeds the budget is its own piece."""
    pieces: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, size in enumerate(sizes):
        if current and used + size > budget:
            # move back to the last apartado start so an apartado's sub-items stay with it
            starts = [j for j in current[1:] if APARTADO.match(paragraphs[j])]
            cut = starts[-1] if starts and not APARTADO.match(paragraphs[i]) else None
            if cut is not None and sum(sizes[j] for j in current if j >= cut) + size <= budget:
                head = [j for j in current if j < cut]
                tail = [j for j in current if j >= cut]
                pieces.append(head)
                current, used = tail, sum(sizes[j] for j in tail)
            else:
                pieces.append(current)
                current, used = [], 0
        current.append(i)
        used += size
    if current:
        pieces.append(current)
    return pieces


def split_sentences(paragraph: str) -> list[str]:
    return [s for s in SENTENCE_END.split(paragraph) if s]


def chunk_law(law: Law, count_tokens: TokenCounter, max_tokens: int = DEFAULT_MAX_TOKENS) -> list[Chunk]:
    """The chunks of every unit of `law` (earlier wordings after the units in force), in order. `count_tokens`
    is the model tokenizer's length function."""
    chunks: list[Chunk] = []
    for article in law.articles:
        chunks += _chunk_article(law, article, count_tokens, max_tokens, None)
    for article in law.history:
        chunks += _chunk_article(law, article, count_tokens, max_tokens, article.version_date)
    return chunks


def _chunk_article(
    law: Law, article: Article, count_tokens: TokenCounter, max_tokens: int, version: str | None
) -> list[Chunk]:
    key = f"{law.boe_id}#{article.article_id}" + (f"@{version}" if version else "")

    def chunk(part: int, text: str) -> Chunk:
        return Chunk(f"{key}#{part}", law.boe_id, article.article_id, part, text, version)

    header = context_header(law, article)
    body = article.text or article.heading
    whole = f"{header}\n{body}"
    [total] = count_tokens([whole])
    if total <= max_tokens:
        return [chunk(0, whole)]
    [header_tokens] = count_tokens([header])
    budget = max(32, max_tokens - header_tokens)
    paragraphs = body.split("\n")
    sizes = count_tokens(paragraphs)
    # a paragraph longer than the budget is cut at sentence ends, never inside a sentence
    if max(sizes) > budget:
        expanded: list[str] = []
        for paragraph, size in zip(paragraphs, sizes, strict=True):
            expanded.extend(split_sentences(paragraph) if size > budget else [paragraph])
        paragraphs = expanded
        sizes = count_tokens(paragraphs)
    pieces = _pieces(paragraphs, sizes, budget)
    return [chunk(part, "\n".join([header, *(paragraphs[i] for i in piece)])) for part, piece in enumerate(pieces)]
