"""The Qdrant engine: an index as a set of Qdrant collections, on a server (`qdrant://HOST:PORT/NAME`,
`qdrants://` for TLS, the API key from QDRANT_API_KEY) or in the client's local mode (`qdrant:PATH/NAME`).

    open_reader(spec, previous=None) -> Reader     the store's latest commit, as a query reads it
    open_writer(spec) -> Writer                    one writing run (`with open_writer(spec) as writer: …`)

How it is laid out and why readers never see half a commit: `qdrant_store` (collections, the client),
`qdrant_points` (payloads, filters), `qdrant_writer` (commits, the lock, compaction), `qdrant_reader` (search and
catalogue reads); docs/qdrant.md for users."""

from __future__ import annotations

from . import StoreSpec
from .qdrant_reader import QdrantReader
from .qdrant_reader import open_reader as _open_reader
from .qdrant_store import QdrantStoreError, StoreBusy
from .qdrant_writer import QdrantWriter

__all__ = ["QdrantReader", "QdrantStoreError", "QdrantWriter", "StoreBusy", "open_reader", "open_writer"]


def open_writer(spec: StoreSpec | str) -> QdrantWriter:
    """A writer of the store (enter it to take the lock)."""
    return QdrantWriter(spec if isinstance(spec, StoreSpec) else StoreSpec.parse(spec))


def open_reader(spec: StoreSpec | str, previous=None) -> QdrantReader:
    """The reader of the store's latest commit."""
    return _open_reader(spec if isinstance(spec, StoreSpec) else StoreSpec.parse(spec), previous)
