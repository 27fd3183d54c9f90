"""The Qdrant engine's connection and layout: one client per store and process, every call wrapped so that a
failure is one line naming the store (`StoreSpec.label`, never the API key), and the collections of one index.

    NAME_meta              head (the commit marker: commit, generation, static manifest), one state point per
                           commit (counts, sources, BM25 statistics, key counters: the commits log), the writer
                           lock's owner, sync's norms and syncs log
    NAME_lock              exists only while a writer runs (creating a collection is atomic on a server)
    NAME_gN_chunks         one point per chunk version: named dense vectors "full" (the stored float16 vector)
                           and "d<dim>" per built dim, sparse "bm25"; payload: the chunk, its unit and law fields
    NAME_gN_units          one point per unit version (the `articles` row with its law's title, rango …)
    NAME_gN_laws           one point per law version (the `laws` row)
    NAME_gN_terms          one point per analysed term: its sparse index id and document frequency per commit

Versioned points: every data point carries `added` (the commit that wrote it) and, once replaced or removed,
`removed` (the commit that did). A reader of commit C sees points with added <= C and no removed <= C. Point
ids are integers (a chunk's, unit's or law's key within the generation, allocated from the state's counter).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..errors import IndexFormatError, LegalSearchError
from . import StoreSpec

API_KEY_ENV = "QDRANT_API_KEY"
TIMEOUT_ENV = "QDRANT_TIMEOUT"
NAMESPACE = uuid.UUID("6f1c8f8e-5d0e-4a57-9f53-3c1d0c2a9b71")
KINDS = ("chunks", "units", "laws", "terms")
PAGE = 512  # points per scroll page and per upsert batch


class QdrantStoreError(LegalSearchError):
    """A Qdrant store could not be reached or answered with an error."""


class StoreBusy(LegalSearchError):
    """Another writer holds the store."""


def point_id(text: str) -> str:
    """A stable point id for a meta point or a term (uuid5 of `text`)."""
    return str(uuid.uuid5(NAMESPACE, text))


def day(value) -> int | None:
    """An ISO day as YYYYMMDD (an int a range filter compares as the SQL compares the text), else None."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", value):
        return None
    return int(value[:10].replace("-", ""))


def _journal_ahead(client) -> None:
    """Local mode writes each point in its own SQLite transaction, with a rollback journal and a full sync: 22 ms
    a point. In WAL mode with normal syncs a point is still written whole or not at all and survives the process
    being killed (what a commit relies on); only a power cut may lose the last transactions, which the commit
    marker makes harmless. Reaches into the client's local storage: where it looks different, nothing changes."""
    collections = getattr(getattr(client, "_client", None), "collections", None)
    for collection in (collections or {}).values():
        connection = getattr(getattr(collection, "storage", None), "storage", None)
        if connection is None or getattr(collection, "_legalsearch_wal", False):
            continue
        with contextlib.suppress(Exception):
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            collection._legalsearch_wal = True


class _Shared:
    """One client per store location and process (Qdrant's local mode allows one client per folder), with a
    lock around calls in local mode (its collections are plain Python objects)."""

    def __init__(self, client, local: bool) -> None:
        self.client = client
        self.local = local
        self.users = 0
        self.lock = threading.RLock() if local else contextlib.nullcontext()


_shared: dict[tuple, _Shared] = {}
_shared_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Close the clients still open as the process ends (the client's own finaliser complains then)."""
    with _shared_lock:
        for shared in _shared.values():
            with contextlib.suppress(Exception):
                shared.client.close()
        _shared.clear()


def _location(spec: StoreSpec) -> tuple:
    return ("path", str(Path(spec.path).resolve())) if spec.path is not None else ("url", spec.url)


def _reason(exc: BaseException, key: str | None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if key:
        text = text.replace(key, "***")
    return text[:200]


class Connection:
    """A store's client, shared in the process; `call` runs one client method, turning any failure into one
    `QdrantStoreError` line naming the store."""

    def __init__(self, spec: StoreSpec) -> None:
        self.spec = spec
        self.label = spec.label
        self.name = spec.name
        self._key = os.environ.get(API_KEY_ENV) or None
        self._location = _location(spec)
        with _shared_lock:
            shared = _shared.get(self._location)
            if shared is None:
                shared = _shared[self._location] = _Shared(self._open(), spec.path is not None)
            shared.users += 1
        self._shared = shared
        self.local = shared.local
        self._closed = False

    def __repr__(self) -> str:
        return f"Connection({self.label})"

    def _open(self):
        from qdrant_client import QdrantClient

        from ..quiet import quiet_third_party

        try:
            with quiet_third_party():
                if self.spec.path is not None:
                    Path(self.spec.path).mkdir(parents=True, exist_ok=True)
                    client = QdrantClient(path=str(self.spec.path))
                    _journal_ahead(client)
                    return client
                timeout = int(os.environ.get(TIMEOUT_ENV) or 30)
                return QdrantClient(url=self.spec.url, api_key=self._key, timeout=timeout, check_compatibility=False)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreBusy(
                    f"{self.label}: another process has this Qdrant folder open (local mode allows one process per "
                    "folder); wait for it to finish, or serve and write through a Qdrant server"
                ) from None
            raise QdrantStoreError(f"{self.label}: Qdrant could not open it ({_reason(exc, self._key)})") from None
        except OSError as exc:
            raise QdrantStoreError(f"{self.label}: Qdrant could not open it ({_reason(exc, self._key)})") from None

    def call(self, method: str, *args, **kwargs):
        """`client.method(*args, **kwargs)`, failures as one line."""
        from ..quiet import quiet_third_party

        try:
            with self._shared.lock, quiet_third_party():
                answer = getattr(self._shared.client, method)(*args, **kwargs)
                if self.local and method == "create_collection":
                    _journal_ahead(self._shared.client)
                return answer
        except LegalSearchError:
            raise
        except Exception as exc:  # the client raises httpx, grpc, its own and ValueError for a missing collection
            status = getattr(exc, "status_code", None)
            if status in (401, 403):
                raise QdrantStoreError(
                    f"{self.label}: Qdrant refused the API key (HTTP {status}); set {API_KEY_ENV} to a key of this "
                    "cluster"
                ) from None
            raise QdrantStoreError(f"{self.label}: Qdrant {method} failed ({_reason(exc, self._key)})") from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _shared_lock:
            self._shared.users -= 1
            if self._shared.users <= 0:
                _shared.pop(self._location, None)
                with contextlib.suppress(Exception), self._shared.lock:
                    self._shared.client.close()

    # --- collections -------------------------------------------------------------------------------------
    @property
    def meta(self) -> str:
        return f"{self.name}_meta"

    @property
    def lock_collection(self) -> str:
        return f"{self.name}_lock"

    def collection(self, generation: int, kind: str) -> str:
        return f"{self.name}_g{generation}_{kind}"

    def collections(self) -> set[str]:
        return {c.name for c in self.call("get_collections").collections}

    def generations(self) -> set[int]:
        """Generations whose collections exist (a killed rewrite may leave one no head names)."""
        pattern = re.compile(rf"{re.escape(self.name)}_g(\d+)_({'|'.join(KINDS)})")
        return {int(m.group(1)) for c in self.collections() if (m := pattern.fullmatch(c))}

    # --- points ------------------------------------------------------------------------------------------
    def get(self, collection: str, ids: list, payload=True, vectors=False) -> list:
        """Points by id (in the order found; missing ids left out)."""
        found = []
        for start in range(0, len(ids), PAGE):
            found += self.call(
                "retrieve", collection, ids=ids[start : start + PAGE], with_payload=payload, with_vectors=vectors
            )
        return found

    def scroll(self, collection: str, where=None, payload=True, vectors=False) -> Iterator:
        """Every point `where` lets through, page by page."""
        offset = None
        while True:
            points, offset = self.call(
                "scroll", collection, scroll_filter=where, limit=PAGE, offset=offset, with_payload=payload,
                with_vectors=vectors,
            )  # fmt: skip
            yield from points
            if offset is None:
                return

    def upsert(self, collection: str, points: list) -> None:
        for start in range(0, len(points), PAGE):
            self.call("upsert", collection, points=points[start : start + PAGE], wait=True)

    def meta_point(self, key: str) -> dict | None:
        found = self.get(self.meta, [point_id(key)])
        return found[0].payload if found else None

    def head(self) -> dict | None:
        """The commit marker (None: no index in this store)."""
        if self.meta not in self.collections():
            return None
        return self.meta_point("head")

    def state(self, commit: int) -> dict:
        found = self.meta_point(f"state:{commit}")
        if found is None:
            raise IndexFormatError(f"{self.label}: commit {commit} has no state record; the store is damaged")
        return found

    def no_index(self) -> IndexFormatError:
        return IndexFormatError(
            f"{self.label}: no index here; build one with `legalsearch index SOURCE… --store {self.label}`"
        )
