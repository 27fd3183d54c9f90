"""Errors raised by the library. The CLI turns each into one line and a non-zero exit."""

from __future__ import annotations


class LegalSearchError(Exception):
    """Base class: every error the library raises on purpose."""


class ParseError(LegalSearchError):
    """A source could not be read as a Spanish statute."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class FetchError(LegalSearchError):
    """The BOE open-data API could not deliver a law."""


class ModelError(LegalSearchError):
    """The embedding model could not be loaded or does not match the index."""


class IndexFormatError(LegalSearchError):
    """An index folder is missing, broken, or was written by an incompatible version."""


class UsageError(LegalSearchError):
    """An argument is invalid (an impossible date, an unknown option value …): the caller must change it."""


class QueryError(UsageError):
    """A search request is invalid (empty query, k <= 0, a dim that was not built …)."""


class TargetError(UsageError):
    """The index path names something legalsearch did not make (a file, a foreign folder, the sources)."""
