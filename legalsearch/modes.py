"""The search modes, in one place: the CLI, the HTTP API, MCP, the web pages and the manifest's defaults read
them from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    summary: str  # English, for help texts and the API's descriptions
    label_es: str  # Spanish, for the web pages
    needs_model: bool  # whether the query is embedded


MODES = (
    Mode("dense", "cosine of the question's vector at one Matryoshka dim", "Por significado", True),
    Mode(
        "funnel", "a shortlist at a small dim, re-ranked by exact cosine at the full dim", "Por significado (rápido)",
        True,
    ),
    Mode("lexical", "BM25 over the words (Spanish analysis) and the legal lexicon", "Por palabras", False),
    Mode("hybrid", "dense and lexical fused by rank, with the agreement gate", "Palabras y significado", True),
)  # fmt: skip
SEARCH_MODES = tuple(mode.name for mode in MODES)
BY_NAME = {mode.name: mode for mode in MODES}


def choices() -> str:
    """ "dense, funnel, lexical or hybrid": the modes as help texts name them."""
    return ", ".join(SEARCH_MODES[:-1]) + " or " + SEARCH_MODES[-1]
