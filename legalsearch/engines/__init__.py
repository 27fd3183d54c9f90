"""Stores: where an index lives. `local` (a folder of segments and an SQLite catalogue, the default) or `qdrant`
(a Qdrant server, or the client's local mode in a folder). `Store.parse` reads what `--index`/`--store` or
`LEGALSEARCH_STORE` give:

    indexes/default                     a local index folder
    qdrant://HOST:PORT/NAME             a Qdrant server (https:// with `qdrants://`; API key from QDRANT_API_KEY)
    qdrant:PATH/NAME                    Qdrant's local mode in the folder PATH, collections named NAME_*
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

STORE_ENV = "LEGALSEARCH_STORE"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


@dataclass(frozen=True)
class StoreSpec:
    """Where an index lives. `engine` is "local" or "qdrant"; for qdrant either `url` (a server) or `path` (local
    mode), and `name` (the prefix of its collections)."""

    engine: str
    path: Path | None = None  # local: the index folder; qdrant local mode: the folder Qdrant keeps its data in
    url: str | None = None  # qdrant server: http(s)://HOST:PORT
    name: str | None = None  # qdrant: the index's name (its collections' prefix)

    @property
    def label(self) -> str:
        """How messages name the store (never with a key or password)."""
        if self.engine == "local":
            return str(self.path)
        return f"qdrant:{self.path}/{self.name}" if self.path is not None else f"{self.url}/{self.name}"

    @classmethod
    def parse(cls, given: str | Path | None, default: Path | None = None) -> StoreSpec:
        """The store `given` names (None: `LEGALSEARCH_STORE`, else `default`, a local folder)."""
        text = str(given) if given is not None else os.environ.get(STORE_ENV) or (str(default) if default else "")
        if not text:
            raise UsageError("no index given: pass --index PATH (or a qdrant: store), or set LEGALSEARCH_STORE")
        if not text.startswith("qdrant"):
            return cls("local", path=Path(text))
        if text.startswith(("qdrant://", "qdrants://")):
            scheme = "https" if text.startswith("qdrants://") else "http"
            rest = text.split("://", 1)[1]
            if "@" in rest:
                raise UsageError(f"{scheme}://…: put the Qdrant API key in QDRANT_API_KEY, never in the store address")
            host, _, name = rest.partition("/")
            if not host or not _NAME.fullmatch(name or ""):
                raise UsageError(
                    f"{text}: a Qdrant server store is qdrant://HOST:PORT/NAME (NAME: letters, digits, _ -)"
                )
            return cls("qdrant", url=f"{scheme}://{host}", name=name)
        if text.startswith("qdrant:"):
            folder, _, name = text[len("qdrant:") :].rstrip("/").rpartition("/")
            if not folder or not _NAME.fullmatch(name):
                raise UsageError(f"{text}: a Qdrant local-mode store is qdrant:PATH/NAME (NAME: letters, digits, _ -)")
            return cls("qdrant", path=Path(folder), name=name)
        return cls("local", path=Path(text))


def is_qdrant(given: str | Path | None) -> bool:
    text = str(given) if given is not None else os.environ.get(STORE_ENV, "")
    return text.startswith("qdrant")


def open_writer(spec_or_path: StoreSpec | str | Path | None, sources=()):
    """The `Writer` of one writing run on the store `spec_or_path` names (a `StoreSpec`, or what `StoreSpec.parse`
    reads; None: `LEGALSEARCH_STORE`). `sources`: the paths the run reads (a local index must not be or hold them).
    Use it as a context manager: the lock is taken on entering."""
    spec = spec_or_path if isinstance(spec_or_path, StoreSpec) else StoreSpec.parse(spec_or_path)
    if spec.engine == "qdrant":
        from . import qdrant

        return qdrant.open_writer(spec)
    from .local_writer import LocalWriter

    return LocalWriter(spec, sources)
