"""The local engine's `Writer`: one writing run on an index folder (`index`, `sync`, `index --compact`,
`calibrate`).

It checks the target before anything is read (a folder legalsearch may write: absent, empty or an index, never
one that holds the sources; a link resolved once to the real folder; storage that can be written), holds the
writers' lock (`store.WriterLock`) from `__enter__` to `__exit__`, removes what killed runs left (`store.tidy`),
and keeps the run's manifest (`Manifest`, read once, replaced by what each commit returns) and its view of the
stored vectors. Every change goes through `store.py` (segments and the catalogue transaction) and the catalogue's
write SQL (`catalogue.writes`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import store
from ..catalogue import DATABASE, connect, open_writer, writes
from ..files import check_writable, storage_errors
from ..segments import Layout, damaged
from . import StoreSpec
from .base import Writer


@dataclass(frozen=True)
class Manifest:
    """What a run reads of an index's manifest (with the catalogue's facts), typed; `raw` is the manifest as
    `store.read_manifest` gives it (what `Writer.manifest` returns)."""

    raw: dict
    format_version: int
    model: dict
    dims: tuple[int, ...]
    layout: Layout
    max_tokens: int
    defaults: dict
    sources: dict[str, dict]
    commit: int | None
    counts: dict

    @classmethod
    def of(cls, manifest: dict) -> Manifest:
        return cls(
            raw=manifest,
            format_version=manifest["format_version"],
            model=manifest["model"],
            dims=tuple(manifest["dims"]),
            layout=store.layout_of(manifest),
            max_tokens=manifest["chunking"]["max_tokens"],
            defaults=manifest.get("defaults", {}),
            sources=manifest.get("sources", {}),
            commit=manifest.get("commit"),
            counts=manifest["counts"],
        )

    @property
    def current(self) -> bool:
        """Whether the index is of the format this code writes in place (else a run rewrites it whole)."""
        return self.format_version == store.FORMAT_VERSION


class LocalWriter(Writer):
    """One writing run on the index folder `spec.path`. `sources`: the paths the run reads, which the index must
    not be or hold."""

    def __init__(self, spec: StoreSpec | str | Path, sources: Iterable[Path] = ()) -> None:
        self.spec = spec if isinstance(spec, StoreSpec) else StoreSpec("local", path=Path(spec))
        self.given = Path(self.spec.path)
        self.index = self.given
        self.sources = [Path(s) for s in sources]
        self._lock: store.WriterLock | None = None
        self._manifest: Manifest | None = None
        self._vectors: tuple[int | None, Callable[[list[int]], np.ndarray]] | None = None

    @property
    def label(self) -> str:
        return str(self.index)

    # --- the run ----------------------------------------------------------------------------------------------
    def __enter__(self) -> LocalWriter:
        store.check_target(self.given, self.sources)
        self.index = store.real_path(self.given)  # through a link: the real folder is locked, updated, replaced
        check_writable(self.index)  # before any source is read or chunk embedded
        lock = store.WriterLock(self.index)
        lock.__enter__()
        self._lock = lock
        try:
            store.tidy(self.index)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.__exit__(*exc)

    def check_sources(self, sources: Iterable[Path]) -> None:
        """Refuse sources the index folder is or holds (a run that reads more sources than it began with: `sync`)."""
        store.check_target(self.index, list(sources))

    def exists(self) -> bool:
        return store.is_index(self.index)

    @property
    def state(self) -> Manifest:
        """The manifest of the index as this run last left it (read, and its files checked, once per run)."""
        if self._manifest is None:
            manifest = store.read_manifest(self.index, upgrade=True)
            store.check_files(self.index, manifest)
            self._manifest = Manifest.of(manifest)
        return self._manifest

    def manifest(self) -> dict:
        return self.state.raw

    def _committed(self, manifest: dict) -> dict:
        self._manifest = Manifest.of(manifest)
        return manifest

    # --- what planning reads ------------------------------------------------------------------------------------
    def law_states(self) -> dict[str, dict]:
        worded = self.state.format_version != 1  # format 1 kept no earlier wordings
        with _reading(self.index) as connection:
            return writes.law_states(connection, worded)

    def known_vectors(self, content_hashes: set[str]) -> dict[str, np.ndarray]:
        if not content_hashes or not self.exists():
            return {}
        with _reading(self.index) as connection:
            rows = writes.rows_of_texts(connection, content_hashes)
        if not rows:
            return {}
        vectors = self._row_vectors()(list(rows.values()))
        return dict(zip(rows, vectors, strict=True))

    def _row_vectors(self) -> Callable[[list[int]], np.ndarray]:
        """Global rows → full-dim vectors, over the segments of the commit this run last saw (opened once)."""
        commit = self.state.commit
        if self._vectors is None or self._vectors[0] != commit:
            self._vectors = (commit, store.row_reader(self.index, self.state.raw))
        return self._vectors[1]

    def contents(self) -> store.IndexContents:
        return store.load_contents(self.index)

    def stored_bytes(self) -> int:
        """The bytes the index holds: its segment files and its catalogue."""
        catalogue_files = [self.index / DATABASE, self.index / f"{DATABASE}-wal"]
        files = sum(meta["bytes"] for meta in self.state.raw["files"].values())
        return files + sum(f.stat().st_size for f in catalogue_files if f.exists())

    # --- commits ------------------------------------------------------------------------------------------------
    def commit(self, change: store.Change, on_step=None) -> dict:
        return self._committed(store.commit(self.index, change, on_step))

    def write_all(self, contents: store.IndexContents, kind: str, on_step=None) -> dict:
        self._vectors = None
        return self._committed(store.write_index(self.index, contents, on_step, kind=kind))

    def compact(self, everything: bool, on_step=None) -> dict | None:
        merged = store.compact(self.index, everything=everything, on_step=on_step)
        if merged is not None:
            self._manifest = self._vectors = None
        return merged

    def update_defaults(self, changes: dict) -> dict:
        return self._committed(store.update_defaults(self.index, changes))

    # --- what `sync` remembers ------------------------------------------------------------------------------------
    def norm_states(self) -> dict[str, dict]:
        if not (self.index / DATABASE).is_file() or not self.exists():
            return {}
        with _reading(self.index) as connection:
            return writes.norm_states(connection)

    def sync_runs(self) -> list[tuple[str, dict]]:
        """(at, report) of every `sync` run recorded, oldest first."""
        if not (self.index / DATABASE).is_file() or not self.exists():
            return []
        with _reading(self.index) as connection:
            return writes.sync_runs(connection)

    def laws_held(self) -> set[str]:
        with _reading(self.index) as connection:
            return writes.laws_held(connection)

    def record_norms(self, rows: Sequence[tuple]) -> None:
        if rows and self.exists():
            self._write(lambda connection: writes.record_norms(connection, rows))

    def log_sync(self, at: str, report: dict) -> None:
        if self.exists():
            self._write(lambda connection: writes.log_sync(connection, at, report))

    def _write(self, rows: Callable) -> None:
        """`rows(connection)` in one catalogue transaction."""
        with storage_errors(self.index, lambda: 1 << 16):
            connection = open_writer(self.index / DATABASE)
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    rows(connection)
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            finally:
                connection.close()


class _reading:
    """A read-only connection to an index's catalogue for one read; SQLite's errors there mean it is damaged."""

    def __init__(self, index: Path) -> None:
        self.database = index / DATABASE

    def __enter__(self):
        self.connection = connect(self.database)
        return self.connection

    def __exit__(self, kind, exc, trace) -> None:
        self.connection.close()
        if isinstance(exc, sqlite3.DatabaseError):
            raise damaged(self.database, f"unreadable database ({exc})") from None
