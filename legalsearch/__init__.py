"""legalsearch: semantic search over Spanish legislation (BOE), article by article, with citations."""

from __future__ import annotations

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
from .search import Filters, Hit, LegalSearch
from .sources import parse_bytes, parse_file

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
