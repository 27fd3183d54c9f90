"""One commit of the Qdrant engine (`qdrant_writer`): the replaced laws' points marked removed at the commit,
the added laws' points written (point ids: keys from the previous state's counter), each touched term's document
frequency appended at the commit, the state record of the commit, and last the head, the commit marker: a
single point written whole. Until the head moves, readers read the previous commit; what a killed run wrote
after it, the next writer removes (`QdrantWriter.tidy`)."""

from __future__ import annotations

from collections import Counter

from .. import lexical
from ..store import StoredLaw, now, pause
from .qdrant_points import (
    bm25_values,
    bucket_ids,
    bucket_of,
    chunk_payload,
    df_at,
    law_payload,
    match,
    stored_vectors,
    unit_payloads,
    visible,
)  # fmt: skip
from .qdrant_store import Connection, point_id


def write_state(conn: Connection, state: dict) -> None:
    from qdrant_client import models as m

    payload = {**state, "kind": "state"}
    conn.upsert(conn.meta, [m.PointStruct(id=point_id(f"state:{state['commit']}"), vector={}, payload=payload)])


def move_head(conn: Connection, commit: int, generation: int, manifest: dict) -> None:
    """The commit point: one point written whole."""
    from qdrant_client import models as m

    payload = {"kind": "head", "commit": commit, "generation": generation, "manifest": manifest, "at": now()}
    conn.upsert(conn.meta, [m.PointStruct(id=point_id("head"), vector={}, payload=payload)])


class Commit:
    """One commit: the replaced laws' points marked removed, the added laws' points written, term frequencies
    and statistics carried forward, the state record, then the head."""

    def __init__(self, conn, generation, state, manifest, change, on_step) -> None:
        self.conn, self.generation, self.previous = conn, generation, state
        self.manifest, self.change, self.on_step = manifest, change, on_step
        self.commit = state["commit"] + 1

    def name(self, kind: str) -> str:
        return self.conn.collection(self.generation, kind)

    def step(self, what: str) -> None:
        if self.on_step is not None:
            self.on_step(what)

    def run(self) -> None:
        change = self.change
        replaced = sorted({s.law.boe_id for s in change.added} | set(change.removed))
        old = self._retire(replaced)
        tokens = [
            s.tokens if s.tokens is not None else lexical.analyze([c.text for c in s.chunks]) for s in change.added
        ]
        delta: Counter = Counter()
        for law_tokens in tokens:
            for chunk_tokens in law_tokens:
                delta.update(set(chunk_tokens))
        for tf in old["tf"]:
            delta.subtract(set(tf))

        ids = self._terms(delta)
        self.step("terms")
        added = self._write(change.added, tokens, ids, old)
        pause("segment-written")
        previous = self.previous
        counts = {
            "laws": previous["counts"]["laws"] - old["laws"] + len(change.added),
            "articles": previous["counts"]["articles"] - old["in_force"] + added["in_force"],
            "earlier_wordings": previous["counts"]["earlier_wordings"] - old["earlier"] + added["earlier"],
            "chunks": added["chunks"],
        }
        sources = {k: v for k, v in previous["sources"].items() if k not in change.dropped_sources}
        sources.update(change.sources)
        at = now()
        stored = sorted(set(change.removed) - {s.law.boe_id for s in change.added})
        write_state(self.conn, {
            "commit": self.commit, "at": at, "kind": change.kind, "created": previous.get("created") or at,
            "counts": counts, "sources": sources, "chunks": added["chunks"], "total_length": added["total_length"],
            "next_key": added["next_key"], "next_term": self.next_term,
            "laws_added": [s.law.boe_id for s in change.added], "laws_removed": stored,
            "chunks_added": added["written"], "chunks_deleted": len(old["tf"]), "embedded": change.embedded,
        })  # fmt: skip
        pause("before-commit")
        move_head(self.conn, self.commit, self.generation, self.manifest)
        self.step("commit")
        pause("committed")

    def _retire(self, boe_ids: list[str]) -> dict:
        """Mark the live points of these laws removed at this commit; what they held (for the statistics)."""
        old = {"tf": [], "lengths": 0, "laws": 0, "in_force": 0, "earlier": 0}
        if not boe_ids:
            return old
        conn, before = self.conn, self.previous["commit"]
        for start in range(0, len(boe_ids), 256):
            where = visible(before, [match("boe_id", boe_ids[start : start + 256])])
            for kind, fields in (("chunks", ["tf", "length"]), ("units", ["wording"]), ("laws", False)):
                points = list(conn.scroll(self.name(kind), where, fields))
                if kind == "chunks":
                    old["tf"] += [p.payload["tf"] for p in points]
                    old["lengths"] += sum(p.payload["length"] for p in points)
                elif kind == "units":
                    old["earlier"] += sum(1 for p in points if p.payload["wording"])
                    old["in_force"] += sum(1 for p in points if not p.payload["wording"])
                else:
                    old["laws"] += len(points)
                ids = [p.id for p in points]
                for at in range(0, len(ids), 512):
                    conn.call(
                        "set_payload", self.name(kind), payload={"removed": self.commit}, points=ids[at : at + 512]
                    )
        self.step("retired")
        return old

    def _terms(self, delta: Counter) -> dict[str, int]:
        """Each term's sparse index id (new terms get the next ids); the frequency of each term this commit
        changes, at this commit (the buckets holding them rewritten)."""
        from qdrant_client import models as m

        self.next_term = self.previous["next_term"]
        buckets = {p.id: p.payload for p in self.conn.get(self.name("terms"), bucket_ids(delta))}
        ids, changed = {}, set()
        for term in sorted(delta):
            pid = point_id(f"terms:{bucket_of(term)}")
            bucket = buckets.setdefault(pid, {"bucket": bucket_of(term), "terms": {}, "latest": self.commit})
            entry = bucket["terms"].get(term)
            if entry is None:
                entry = bucket["terms"][term] = {"id": self.next_term, "df": [], "created": self.commit}
                self.next_term += 1
            ids[term] = entry["id"]
            if delta[term] or not entry["df"]:
                df = df_at(entry, self.previous["commit"]) + delta[term]
                entry["df"] = [e for e in entry["df"] if e[0] < self.commit] + [[self.commit, df]]
                bucket["latest"] = self.commit
                changed.add(pid)
        points = [m.PointStruct(id=pid, vector={}, payload=buckets[pid]) for pid in sorted(changed)]
        self.conn.upsert(self.name("terms"), points)
        return ids

    def _write(self, laws: list[StoredLaw], tokens, ids: dict[str, int], old: dict) -> dict:
        from qdrant_client import models as m

        conn, commit = self.conn, self.commit
        previous = self.previous
        chunks = previous["chunks"] - len(old["tf"]) + sum(len(s.chunks) for s in laws)
        total = previous["total_length"] - old["lengths"] + sum(len(t) for law in tokens for t in law)
        average = total / chunks if chunks else 1.0
        key = previous["next_key"]
        written = in_force = earlier = 0
        layout = self.manifest
        quantize = layout["faiss"].get("quantize", "none")
        for stored, law_tokens in zip(laws, tokens, strict=True):
            law = stored.law
            conn.upsert(self.name("laws"), [m.PointStruct(id=key, vector={}, payload=law_payload(stored, key, commit))])
            key += 1
            units = unit_payloads(law, key, commit)
            key += len(units)
            in_force += len(law.articles)
            earlier += len(law.history)
            conn.upsert(self.name("units"), [m.PointStruct(id=u["key"], vector={}, payload=u) for u in units])
            by_wording = {(u["article_id"], u["wording"]): u for u in units}
            vectors = stored_vectors(stored.vectors, layout["dims"], quantize)
            points = []
            for i, (chunk, chunk_tokens) in enumerate(zip(stored.chunks, law_tokens, strict=True)):
                payload = chunk_payload(chunk, key, by_wording[(chunk.article_id, chunk.version or "")], chunk_tokens,
                                        commit)  # fmt: skip
                named = {name: values[i].tolist() for name, values in vectors.items()}
                named["bm25"] = bm25_values(payload["tf"], payload["length"], average, ids)
                points.append(m.PointStruct(id=key, vector=named, payload=payload))
                key += 1
            conn.upsert(self.name("chunks"), points)
            written += len(points)
            self.step(law.boe_id)
        return {"chunks": chunks, "total_length": total, "next_key": key, "written": written, "in_force": in_force,
                "earlier": earlier}  # fmt: skip
