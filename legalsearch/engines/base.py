"""The store interface: what the query side reads of one commit, and what a writer does to make the next one.

Two engines implement it: `local` (the index folder: immutable segments with FAISS and BM25 files, and the SQLite
catalogue) and `qdrant` (a Qdrant collection set, on a server or in the client's local mode). Everything above
(`search.LegalSearch`, the retrievers' roll-up and fusion, the legal priors, citations, the CLI, HTTP, MCP, web
pages and RAG integrations) reads a store only through `Reader`, and `indexing`/`sync` write it only through
`Writer`, so both engines give the same answers.

Keys. Within one `Reader` a chunk is an int (`ChunkKey`) and a unit (one wording of an article, disposición …)
is an int (`UnitKey`); both are only meaningful for that reader (the local engine's global rows are renumbered by
merges). The stable id of a chunk is its `chunk_id` with its wording (`"<boe_id>#<article_id>#<part>"`, wording ''
in force), which the Qdrant engine turns into its point id.

Rows. Catalogue reads return plain dicts with the columns of docs/architecture.md's catalogue tables (`laws`,
`articles`), JSON columns decoded (`materias`, `referencias`, `path`, `notes`), so every engine answers with the
same values.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..filters import Filters

ChunkKey = int
UnitKey = int
Found = list[list[tuple[ChunkKey, float, UnitKey]]]  # per query: (chunk, score, its unit), best first


@dataclass(frozen=True)
class Restriction:
    """What a search may return, as an engine prepared it from `Filters` (the local engine: the allowed chunk
    rows; Qdrant: a payload filter). `count` is how many chunks it allows (0: nothing can match)."""

    filters: Filters
    count: int
    native: object  # the engine's own form


class Reader(ABC):
    """One commit of a store, as a query sees it from start to end.

    `manifest` is the index's manifest (model, dims, FAISS layout, defaults) with the commit's facts (`commit`,
    `counts`, `updated`, …). A reader is shared by a query's threads; it is replaced (`is_current` False) when a
    writer commits."""

    manifest: dict
    commit: int
    memo: dict  # what the query side computed from this commit (cached per reader)

    @abstractmethod
    def is_current(self) -> bool:
        """Whether no writer has committed since this reader was opened (cheap: called before every query)."""

    @property
    @abstractmethod
    def live(self) -> int:
        """Live chunks (every wording held)."""

    # --- candidates ------------------------------------------------------------------------------------
    @abstractmethod
    def restrict(self, filters: Filters, in_force_only: bool) -> Restriction:
        """`filters` as this engine applies them. `in_force_only` (an index with earlier wordings, no as_of):
        only the wordings in force. Unknown laws, rangos, materias raise `QueryError` naming what the index holds."""

    @abstractmethod
    def allows(self, restriction: Restriction | None, chunk: ChunkKey) -> bool:
        """Whether `restriction` (None: everything live) lets `chunk` through."""

    # --- retrieval -------------------------------------------------------------------------------------
    @abstractmethod
    def dense(self, vectors: np.ndarray, dim: int, n: int, restriction: Restriction | None) -> Found:
        """The best `n` chunks per query by cosine at `dim` (query `vectors` at full dim, unit length; the engine
        takes their Matryoshka prefix). Quantized storage is rescored in float."""

    @abstractmethod
    def funnel(
        self, vectors: np.ndarray, dim: int, small: int, shortlist: int, n: int, restriction: Restriction | None
    ) -> Found:
        """A shortlist of max(n, `shortlist`) chunks at dim `small`, re-ranked by exact cosine at `dim`."""

    @abstractmethod
    def lexical(
        self, queries: Sequence[str], n: int, restriction: Restriction | None, expansions, weight: float
    ) -> Found:
        """The best `n` chunks per query by BM25 (Lucene's variant, `lexical.K1`/`lexical.B`) with statistics over
        every live chunk (N, average length, document frequencies), plus the lexicon's `expansions` at
        `weight`."""

    @abstractmethod
    def prefixes(self, chunks: Sequence[ChunkKey], dim: int) -> np.ndarray:
        """The stored vectors of `chunks` at `dim` (float32, re-normalised prefixes): the cosine of a hit."""

    @abstractmethod
    def idf(self, term: str) -> float:
        """The BM25 IDF of an analysed term over the live chunks (0.0 when no chunk holds it)."""

    # --- what the hits show ----------------------------------------------------------------------------
    @abstractmethod
    def units(self, keys: Sequence[UnitKey]) -> dict[UnitKey, dict]:
        """Unit rows by key: every `articles` column, with `law_title`, `rango`, `source_format` of its law and
        `repealed` (bool: the unit or its law repealed, or the wording in force expired)."""

    @abstractmethod
    def chunks(self, keys: Sequence[ChunkKey]) -> dict[ChunkKey, dict]:
        """Chunk rows by key: `part`, `text` (with its header), `boe_id`, `article_id`, `wording`."""

    @abstractmethod
    def unit_chunks(self, boe_id: str, article_ids: Sequence[str] | None) -> list[tuple[UnitKey, str, str, ChunkKey]]:
        """(unit, article_id, wording, chunk) of a law's units — those of `article_ids`, or with None its
        articles that cover a range ("a127-a130") — the wording in force first, then by chunk."""

    # --- browsing --------------------------------------------------------------------------------------
    @abstractmethod
    def titles(self) -> dict[str, str]:
        """boe_id → official title of every law."""

    @abstractmethod
    def laws(self) -> list[dict]:
        """Every law's row, in the order indexed, with `articles`: how many units in force it has."""

    @abstractmethod
    def law(self, boe_id: str) -> dict | None:
        """One law's row, or None."""

    @abstractmethod
    def units_in_force(self, boe_id: str) -> list[dict]:
        """`article_id`, `kind`, `number`, `heading`, `path`, `url` of a law's units in force, in the law's order."""

    @abstractmethod
    def wordings(self, boe_id: str, article_id: str) -> list[dict]:
        """Every wording held of one unit, oldest first (undated first): `units` rows plus `in_force_from` (its
        date, else its law's entry into force or publication)."""

    @abstractmethod
    def has_unit(self, boe_id: str, article_id: str) -> bool: ...

    @abstractmethod
    def range_units(self, boe_id: str) -> list[str]:
        """article_ids of a law's articles that cover a range of articles ("a127-a130")."""

    @abstractmethod
    def has_earlier_wordings(self, boe_id: str) -> bool:
        """Whether the store holds a wording of `boe_id` that is no longer in force."""

    @abstractmethod
    def changes(self, since: str, until: str | None, laws: Sequence[str]) -> list[dict]:
        """Units whose wording came into force in [since, until] from another norm, newest first: `boe_id`,
        `article_id`, `heading`, `version_date`, `version_until`, `version_norma`, `url`, `wording`, `title` (the
        law's)."""

    @abstractmethod
    def article_keys(self) -> set[str]:
        """ "<boe_id>#<article_id>" of every unit held."""

    @abstractmethod
    def syncs(self) -> list[tuple[str, dict]]:
        """(at, report) of every `sync` run recorded, oldest first."""

    def close(self) -> None:  # noqa: B027 (optional)
        """Release what the reader holds (files, connections)."""


class Writer(ABC):
    """One writing run on a store (`index`, `sync`, `index --compact`, `calibrate`): it holds the store's writer
    lock from `__enter__` to `__exit__` (a second writer is refused at once with one line), and every change it
    makes is one commit that readers see whole or not at all. A run killed at any moment leaves the previous commit
    answering; the next writer clears what it left (`__enter__`)."""

    @abstractmethod
    def __enter__(self) -> Writer: ...

    @abstractmethod
    def __exit__(self, *exc) -> None: ...

    @abstractmethod
    def exists(self) -> bool:
        """Whether the store holds an index (a first build writes it whole: `write_all`)."""

    @abstractmethod
    def manifest(self) -> dict:
        """The manifest with the catalogue's facts (as `Reader.manifest`); older formats upgraded in memory."""

    @abstractmethod
    def law_states(self) -> dict[str, dict]:
        """boe_id → `fecha_actualizacion`, `fecha_publicacion`, `source_format`, `units` (units in force) of every
        law held: what planning compares new sources with."""

    @abstractmethod
    def known_vectors(self, content_hashes: set[str]) -> dict[str, np.ndarray]:
        """The stored full-dim vectors of chunks with these content hashes (a chunk whose text is held is not
        embedded again)."""

    @abstractmethod
    def contents(self):
        """Everything held (`store.IndexContents`: laws with units, chunks, vectors): a rewrite reads it."""

    @abstractmethod
    def commit(self, change, on_step=None) -> dict:
        """Apply one `store.Change` (laws added or replacing those of the same boe_id with their chunks, vectors
        and BM25 tokens; laws removed; source records) as one commit. Returns the manifest after it."""

    @abstractmethod
    def write_all(self, contents, kind: str, on_step=None) -> dict:
        """Write the whole index (`store.IndexContents`: a first build, or a rewrite for new dims, FAISS layout or
        chunk budget) as one commit replacing what was held. Returns the manifest after it."""

    @abstractmethod
    def compact(self, everything: bool, on_step=None) -> dict | None:
        """Merge what the engine's merge policy says (everything: all of it); None when nothing was merged."""

    @abstractmethod
    def update_defaults(self, changes: dict) -> dict:
        """Set search defaults in the manifest (`calibrate`, `eval --save`); the manifest after."""

    # --- what `sync` remembers ---------------------------------------------------------------------------
    @abstractmethod
    def norm_states(self) -> dict[str, dict]:
        """boe_id → `fecha_actualizacion`, `state`, `checked`, `error` of every norm `sync` recorded."""

    @abstractmethod
    def record_norms(self, rows: Sequence[tuple]) -> None:
        """Record (boe_id, fecha_actualizacion, state, checked, error) rows, replacing those of the same boe_id."""

    @abstractmethod
    def log_sync(self, at: str, report: dict) -> None:
        """Append one `sync` run's report to the log `Reader.syncs` reads."""

    def sync_runs(self) -> list[tuple[str, dict]]:
        """(at, report) of every `sync` run logged, oldest first (as `Reader.syncs`): where the next run's window
        starts. An engine that does not say lists the whole catalogue on every run."""
        return []
