"""The Qdrant engine's writer: one writing run holding the store's lock, every change one commit.

A commit C marks the replaced points `removed = C`, upserts the new ones with `added = C` (point ids: keys
allocated from the previous state's counter), appends each touched term's document frequency at C, writes the
state point of C and, last, the head (the commit marker). A reader keeps reading the commit its head named. A run
killed before the head moved leaves points and entries after the head's commit; the next writer removes them
(`tidy`) before anything else. `compact` deletes the points no commit since reads (removed ones)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np

from ..documents import Chunk
from ..store import MAX_DELETED_SHARE, IndexContents, StoredLaw, _alive, now, pause, static_manifest
from .base import Writer
from .qdrant_commit import Commit, move_head, write_state
from .qdrant_points import INTEGER_FIELDS, KEYWORD_FIELDS, after, df_at, law_of, match, visible
from .qdrant_store import KINDS, Connection, StoreBusy, point_id

SHARDS_ENV, REPLICAS_ENV, ON_DISK_ENV = "QDRANT_SHARDS", "QDRANT_REPLICATION_FACTOR", "QDRANT_ON_DISK"
_held = threading.local()


def _empty_state() -> dict:
    return {
        "commit": 0, "chunks": 0, "total_length": 0, "next_key": 1, "next_term": 0, "sources": {}, "created": None,
        "counts": {"laws": 0, "articles": 0, "earlier_wordings": 0, "chunks": 0},
    }  # fmt: skip


def manifest_of(head: dict, state: dict) -> dict:
    """The manifest as the query side reads it: the static part the head holds, the commit's facts."""
    manifest = dict(head["manifest"])
    manifest.setdefault("defaults", {})
    manifest.update(
        commit=state["commit"], updated=state["at"], created=state["created"], counts=dict(state["counts"]),
        segments=[], sources=dict(state["sources"]), files={}, engine="qdrant",
    )  # fmt: skip
    return manifest


class QdrantWriter(Writer):
    def __init__(self, spec) -> None:
        self.spec = spec
        self.conn: Connection | None = None
        self._nested = False

    # --- the lock ------------------------------------------------------------------------------------------
    def __enter__(self) -> QdrantWriter:
        held = getattr(_held, "labels", None)
        if held is None:
            held = _held.labels = set()
        self.conn = Connection(self.spec)
        if self.spec.label in held:  # `sync` holds it around the `index` runs it makes
            self._nested = True
            return self
        try:
            self._take_lock()
            held.add(self.spec.label)
            self.tidy()
        except BaseException:
            self.conn.close()
            raise
        return self

    def _take_lock(self) -> None:
        from qdrant_client import models as m

        conn = self.conn
        if conn.meta not in conn.collections():
            conn.call("create_collection", conn.meta, vectors_config={})
        for attempt in range(2):
            if conn.lock_collection in conn.collections():
                owner = conn.meta_point("lock") or {}
                stale = owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", 0) or 0))
                if not stale or attempt:
                    who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} since {owner.get('at', '?')}"
                    raise StoreBusy(
                        f"{conn.label}: another legalsearch is writing this index ({who}); wait for it to finish and "
                        f"run again (if that process is gone, delete the collection {conn.lock_collection})"
                    )
                conn.call("delete_collection", conn.lock_collection)
            try:
                conn.call("create_collection", conn.lock_collection, vectors_config={})
                break
            except Exception:  # another writer created it first
                if attempt:
                    raise
        owner = {"kind": "lock", "pid": os.getpid(), "host": socket.gethostname(), "at": now()}
        conn.upsert(conn.meta, [m.PointStruct(id=point_id("lock"), vector={}, payload=owner)])

    def __exit__(self, *exc) -> None:
        if self.conn is None:
            return
        try:
            if not self._nested:
                _held.labels.discard(self.spec.label)
                self.conn.call("delete", self.conn.meta, points_selector=[point_id("lock")])
                self.conn.call("delete_collection", self.conn.lock_collection)
        finally:
            self.conn.close()
            self.conn = None

    # --- what killed runs left ---------------------------------------------------------------------------
    def tidy(self) -> None:
        """Remove what a killed writer left after the head's commit: points added, removals marked, terms and
        frequencies, state records, and a rewrite's collections the head does not name."""
        conn = self.conn
        head = conn.head()
        generation = head["generation"] if head else None
        for other in conn.generations() - {generation}:
            for kind in KINDS:
                if conn.collection(other, kind) in conn.collections():
                    conn.call("delete_collection", conn.collection(other, kind))
        if head is None:
            return
        commit = head["commit"]
        for kind in ("chunks", "units", "laws"):
            name = conn.collection(generation, kind)
            conn.call("delete", name, points_selector=after("added", commit))
            conn.call("delete_payload", name, keys=["removed"], points=after("removed", commit))
        terms = conn.collection(generation, "terms")
        for point in list(conn.scroll(terms, after("latest", commit))):
            kept = {}
            for term, entry in point.payload["terms"].items():
                if entry["created"] <= commit:
                    kept[term] = {**entry, "df": [e for e in entry["df"] if e[0] <= commit]}
            conn.call("set_payload", terms, payload={"terms": kept, "latest": commit}, points=[point.id])
        conn.call("delete", conn.meta, points_selector=_states_after(commit))

    # --- reading what is held ----------------------------------------------------------------------------
    def _head(self) -> dict:
        head = self.conn.head()
        if head is None:
            raise self.conn.no_index()
        return head

    def exists(self) -> bool:
        return self.conn.head() is not None

    def manifest(self) -> dict:
        head = self._head()
        return manifest_of(head, self.conn.state(head["commit"]))

    def _live(self, kind: str, must=None, payload=True, vectors=False):
        head = self._head()
        return self.conn.scroll(
            self.conn.collection(head["generation"], kind), visible(head["commit"], must), payload, vectors
        )

    def stored_bytes(self) -> int:
        """The bytes of this index's collections in local mode (a server's storage is the cluster's: 0)."""
        if not self.conn.local:
            return 0
        folder = Path(self.spec.path) / "collection"
        files = [f for c in folder.glob(f"{self.spec.name}_*") if c.is_dir() for f in c.rglob("*")]
        return sum(f.stat().st_size for f in files if f.is_file())

    def law_states(self) -> dict[str, dict]:
        states = {}
        for point in self._live("laws"):
            row = point.payload["row"]
            states[row["boe_id"]] = {
                "fecha_actualizacion": row["fecha_actualizacion"], "fecha_publicacion": row["fecha_publicacion"],
                "source_format": row["source_format"], "units": point.payload["articles"],
            }  # fmt: skip
        return states

    def known_vectors(self, content_hashes: set[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        hashes = sorted(content_hashes)
        for start in range(0, len(hashes), 256):
            batch = [match("content_hash", hashes[start : start + 256])]
            for point in self._live("chunks", batch, ["content_hash"], ["full"]):
                found[point.payload["content_hash"]] = np.asarray(point.vector["full"], dtype=np.float32)
        return found

    def contents(self) -> IndexContents:
        manifest = self.manifest()
        contents = IndexContents(
            model=manifest["model"], dims=manifest["dims"], faiss_kind=manifest["faiss"]["kind"],
            max_tokens=manifest["chunking"]["max_tokens"], quantize=manifest["faiss"].get("quantize", "none"),
            sources=manifest.get("sources", {}), defaults=manifest.get("defaults", {}),
        )  # fmt: skip
        units: dict[str, list[dict]] = {}
        for point in self._live("units"):
            units.setdefault(point.payload["boe_id"], []).append(point.payload)
        chunks: dict[str, list] = {}
        for point in self._live("chunks", vectors=["full"]):
            chunks.setdefault(point.payload["boe_id"], []).append(point)
        for point in sorted(self._live("laws"), key=lambda p: p.payload["key"]):
            boe_id = point.payload["boe_id"]
            held = sorted(chunks.get(boe_id, []), key=lambda p: p.payload["key"])
            law = law_of(point.payload, units.get(boe_id, []))
            listed = [
                Chunk(p.payload["chunk_id"], boe_id, p.payload["article_id"], p.payload["part"], p.payload["text"],
                      p.payload["wording"] or None)
                for p in held
            ]  # fmt: skip
            vectors = np.array([p.vector["full"] for p in held], dtype=np.float32).reshape(len(held), -1)
            contents.laws.append(StoredLaw(law, listed, vectors, point.payload["row"].get("source_sha256")))
        return contents

    # --- commits -----------------------------------------------------------------------------------------
    def commit(self, change, on_step=None) -> dict:
        head = self._head()
        state = self.conn.state(head["commit"])
        Commit(self.conn, head["generation"], state, head["manifest"], change, on_step).run()
        return self.manifest()

    def write_all(self, contents: IndexContents, kind: str, on_step=None) -> dict:
        """A new generation of collections written whole, then the head moved to it; the old one deleted."""
        from ..store import Change

        conn = self.conn
        head = conn.head()
        generation = max({0, *conn.generations(), *([head["generation"]] if head else [])}) + 1
        created = head["manifest"].get("created") if head else None
        manifest = static_manifest(contents, created)
        self._create(generation, contents)
        state = _empty_state()
        state["commit"] = head["commit"] if head else 0
        state["created"] = created
        change = Change(added=contents.laws, sources=contents.sources, embedded=contents.build.get("embedded", 0))
        change.kind = kind
        Commit(conn, generation, state, manifest, change, on_step).run()
        if head is not None:
            for name in KINDS:
                conn.call("delete_collection", conn.collection(head["generation"], name))
        return self.manifest()

    def _create(self, generation: int, contents: IndexContents) -> None:
        from qdrant_client import models as m

        conn = self.conn
        server = {} if conn.local else _cluster_settings()
        on_disk = os.environ.get(ON_DISK_ENV, "") not in ("", "0") and not conn.local
        quantization = None if conn.local else _quantization(contents.quantize)
        vectors = {"full": m.VectorParams(size=contents.model["dim"], distance=m.Distance.DOT, on_disk=on_disk)}
        for dim in contents.dims:
            vectors[f"d{dim}"] = m.VectorParams(
                size=dim, distance=m.Distance.DOT, on_disk=on_disk, quantization_config=quantization
            )
        conn.call(
            "create_collection", conn.collection(generation, "chunks"), vectors_config=vectors,
            sparse_vectors_config={"bm25": m.SparseVectorParams()}, on_disk_payload=on_disk or None, **server,
        )  # fmt: skip
        for kind in ("units", "laws", "terms"):
            conn.call("create_collection", conn.collection(generation, kind), vectors_config={}, **server)
        if conn.local:
            return  # local mode scans payloads; an index there only warns
        for kind in KINDS:
            for name in KEYWORD_FIELDS[kind]:
                conn.call("create_payload_index", conn.collection(generation, kind), name, m.PayloadSchemaType.KEYWORD)
            for name in INTEGER_FIELDS[kind]:
                conn.call("create_payload_index", conn.collection(generation, kind), name, m.PayloadSchemaType.INTEGER)

    def compact(self, everything: bool, on_step=None) -> dict | None:
        """Delete the points replaced or removed by a commit up to the head's, and the frequencies no commit
        from the head on reads; one commit (kind compact) so that readers reopen. Without `everything`, only when
        removed chunks pass the local engine's share (`store.MAX_DELETED_SHARE`) of those held."""
        from qdrant_client import models as m

        started = time.perf_counter()
        conn = self.conn
        head = self._head()
        commit, generation = head["commit"], head["generation"]
        removed = m.Filter(must=[m.FieldCondition(key="removed", range=m.Range(lte=commit))])
        dropped = sum(
            conn.call("count", conn.collection(generation, k), count_filter=removed, exact=True).count
            for k in ("chunks", "units", "laws")
        )
        if not everything:
            chunks = conn.call("count", conn.collection(generation, "chunks"), count_filter=removed, exact=True).count
            live = conn.state(commit)["chunks"]
            if not chunks or chunks / (chunks + live) <= MAX_DELETED_SHARE:
                return None
        terms = conn.collection(generation, "terms")
        pruned = []
        for point in conn.scroll(terms, None):
            held = point.payload["terms"]
            kept = {t: {**e, "df": [[commit, df_at(e, commit)]]} for t, e in held.items() if df_at(e, commit)}
            if any(len(e["df"]) > 1 for e in held.values()) or len(kept) != len(held):
                pruned.append((point.id, kept))
        if not dropped and not pruned:
            return None
        for kind in ("chunks", "units", "laws"):
            conn.call("delete", conn.collection(generation, kind), points_selector=removed)
        for pid, kept in pruned:
            conn.call("set_payload", terms, payload={"terms": kept}, points=[pid])
        state = dict(conn.state(commit))
        state.update(commit=commit + 1, at=now(), kind="compact", laws_added=[], laws_removed=[], chunks_added=0,
                     chunks_deleted=0, embedded=0)  # fmt: skip
        write_state(conn, state)
        pause("before-commit")
        move_head(conn, commit + 1, generation, head["manifest"])
        pause("committed")
        return {"merged": dropped, "rows": state["chunks"], "seconds": round(time.perf_counter() - started, 3)}

    def update_defaults(self, changes: dict) -> dict:
        head = self._head()
        manifest = dict(head["manifest"])
        manifest["defaults"] = {**manifest.get("defaults", {}), **changes}
        move_head(self.conn, head["commit"], head["generation"], manifest)
        return self.manifest()

    # --- what `sync` remembers ---------------------------------------------------------------------------
    def norm_states(self) -> dict[str, dict]:
        rows = self.conn.scroll(self.conn.meta, _kind("norm"))
        return {
            p.payload["boe_id"]: {k: p.payload[k] for k in ("fecha_actualizacion", "state", "checked", "error")}
            for p in rows
        }

    def sync_runs(self) -> list[tuple[str, dict]]:
        """(at, report) of every `sync` run logged, oldest first."""
        if self.conn.meta not in self.conn.collections():
            return []
        found = sorted(self.conn.scroll(self.conn.meta, _kind("sync")), key=lambda p: p.payload["seq"])
        return [(p.payload["at"], p.payload["report"]) for p in found]

    def record_norms(self, rows) -> None:
        from qdrant_client import models as m

        points = [
            m.PointStruct(
                id=point_id(f"norm:{boe_id}"),
                vector={},
                payload={
                    "kind": "norm",
                    "boe_id": boe_id,
                    "fecha_actualizacion": fecha,
                    "state": state_,
                    "checked": checked,
                    "error": error,
                },
            )
            for boe_id, fecha, state_, checked, error in rows
        ]
        self.conn.upsert(self.conn.meta, points)

    def log_sync(self, at: str, report: dict) -> None:
        from qdrant_client import models as m

        seq = time.time_ns()
        point = m.PointStruct(
            id=point_id(f"sync:{seq}:{os.getpid()}"), vector={}, payload={"kind": "sync", "seq": seq, "at": at,
                                                                           "report": report}
        )  # fmt: skip
        self.conn.upsert(self.conn.meta, [point])


def _kind(kind: str):
    from qdrant_client import models as m

    return m.Filter(must=[match("kind", [kind])])


def _states_after(commit: int):
    from qdrant_client import models as m

    return m.Filter(must=[match("kind", ["state"]), m.FieldCondition(key="commit", range=m.Range(gt=commit))])


def _cluster_settings() -> dict:
    settings = {}
    if os.environ.get(SHARDS_ENV):
        settings["shard_number"] = int(os.environ[SHARDS_ENV])
    if os.environ.get(REPLICAS_ENV):
        settings["replication_factor"] = int(os.environ[REPLICAS_ENV])
    return settings


def _quantization(quantize: str):
    from qdrant_client import models as m

    if quantize == "int8":
        return m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, always_ram=True))
    if quantize == "binary":
        return m.BinaryQuantization(binary=m.BinaryQuantizationConfig(always_ram=True))
    return None
