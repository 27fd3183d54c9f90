"""One query, one commit: what `LegalSearch` and its parts (browsing, RAG context) wrap their public reads in."""

from __future__ import annotations

import functools
import sqlite3

from .errors import IndexFormatError
from .store import DATABASE


def index_errors(method):
    """Run `method` on one commit of the store (`LegalSearch._pinned_query`), unless a query already pinned one;
    a damaged local catalogue met while answering becomes one `IndexFormatError` naming the file, never a raw
    sqlite3 error."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if getattr(self._pinned, "reader", None) is not None:  # called from a query: its commit already
            return method(self, *args, **kwargs)
        try:
            return self._pinned_query(method, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise IndexFormatError(
                f"{self.path / DATABASE}: unreadable database ({exc}); the index is damaged: rebuild it into a "
                "new --index"
            ) from None

    return wrapper
