"""legalsearch: semantic search over Spanish legislation (BOE), article by article, with citations."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .documents import Article, Chunk, Law
from .errors import (
    FetchError,
    IndexFormatError,
    LegalSearchError,
    ModelError,
    ParseError,
    QueryError,
)

if TYPE_CHECKING:
    from .search import Filters, Hit, LegalSearch
    from .sources import parse_bytes, parse_file

# Search and the readers pull in FAISS, bm25s, lxml and BeautifulSoup: imported on first use, so that
# `legalsearch.embedding` (e.g. on a GPU worker) needs only sentence-transformers.
_LAZY = {
    "Filters": "search",
    "Hit": "search",
    "LegalSearch": "search",
    "parse_bytes": "sources",
    "parse_file": "sources",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Article",
    "Chunk",
    "FetchError",
    "Filters",
    "Hit",
    "IndexFormatError",
    "Law",
    "LegalSearch",
    "LegalSearchError",
    "ModelError",
    "ParseError",
    "QueryError",
    "__version__",
    "parse_bytes",
    "parse_file",
]
