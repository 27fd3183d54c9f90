"""Accent folding: the key Spanish words are compared by (lower case, accents stripped). The query side, the
lexical analysis and the parsers all use it; it lives here so that none of them imports another for it."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Lower-case and strip accents: the key used to compare Spanish words."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))
