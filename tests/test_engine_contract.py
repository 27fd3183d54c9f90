"""The store contract, run against both engines: the same index (real BOE laws of corpora/sample, the
Constitution with every wording) in the local engine (segments + SQLite) and in Qdrant (the client's local
mode), asked the same things through `engines.base.Reader`, answers the same: dense, funnel and lexical rankings
(keys compared by the chunk's stable id; scores within `TOLERANCE`), with each filter and an as-of day, and the
catalogue reads the hits and pages show; then again after laws are added, changed and removed, and after a
compaction.

Tolerances: dense and funnel scores are inner products of the same float32 values (Qdrant's local mode sums
in float64, FAISS in float32): within 1e-5. Lexical scores are computed by both in the same float32 steps from
the same statistics: equal to 1e-6 (relative). Chunks whose scores tie within the tolerance may come in either
order; a ranking is compared as the sequence of scores plus, per score, the set of chunks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from legalsearch import indexing, store
from legalsearch.engines import StoreSpec, qdrant
from legalsearch.engines.local import LocalReader
from legalsearch.filters import Filters

from .conftest import CORPORA, needs_corpora

pytestmark = needs_corpora
ENGINES = ["local", "qdrant"]
TOLERANCE = 1e-5
LAWS = ["xml/BOE-A-1989-22056.xml", "xml/BOE-A-2023-16215.xml", "xml/BOE-A-1835-2348.xml"]
HISTORY = "xml/BOE-A-1978-31229.texto.xml"  # the Constitution with its earlier wordings
QUERIES = [
    "derecho de huelga de los trabajadores",
    "libertad de expresión y derecho a la información",
    "reforma de la Constitución por las Cortes Generales",
    "impuesto sobre la renta de las personas físicas",
    "plazo de prescripción de las infracciones",
]
DIMS = [128, 64, 32]
FILTERS = {
    "none": Filters(),
    "law": Filters(laws=("BOE-A-1978-31229",)),
    "rango": Filters(rangos=("Real Decreto",)),
    "kinds": Filters(kinds=("disposiciones",)),
    "vigentes": Filters(vigentes=True),
    "as_of_1990": Filters(as_of="1990-01-01"),
    "as_of_2012": Filters(as_of="2012-01-01", laws=("BOE-A-1978-31229",)),
}


class Pair:
    """The same index in both engines, kept in step by `apply`."""

    def __init__(self, root: Path, encoder) -> None:
        self.root = root
        self.encoder = encoder
        self.local_path = root / "local"
        self.spec = StoreSpec.parse(f"qdrant:{root / 'qdrant'}/contract")

    def build(self) -> None:
        indexing.build([str(CORPORA / HISTORY)], self.local_path, encoder=self.encoder, dims=DIMS, history=True)
        indexing.build([str(CORPORA / p) for p in LAWS[:2]], self.local_path, encoder=self.encoder, dims=DIMS)
        with qdrant.open_writer(self.spec) as writer:
            writer.write_all(store.load_contents(self.local_path), "build")

    def apply(self, change: store.Change) -> None:
        with store.WriterLock(self.local_path):
            store.commit(self.local_path, change)
        with qdrant.open_writer(self.spec) as writer:
            writer.commit(change)

    def compact(self) -> tuple:
        with store.WriterLock(self.local_path):
            local = store.compact(self.local_path, everything=True)
        with qdrant.open_writer(self.spec) as writer:
            remote = writer.compact(True)
        return local, remote

    def reader(self, engine: str):
        if engine == "local":
            path = self.local_path
            return LocalReader.latest(path, lambda: json.loads((path / store.MANIFEST).read_text(encoding="utf-8")))
        return qdrant.open_reader(self.spec)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, encoder) -> Pair:
    built = Pair(tmp_path_factory.mktemp("contract"), encoder)
    built.build()
    return built


@pytest.fixture(scope="module")
def queries(encoder) -> np.ndarray:
    return encoder.encode(QUERIES)


def stable(reader, found) -> list[list[tuple[str, float, str]]]:
    """Rankings with each chunk as its stable id and each unit as boe_id#article_id@wording."""
    keys = {k for ranking in found for k, _, _ in ranking}
    units = reader.units({u for ranking in found for _, _, u in ranking})
    chunks = reader.chunks(keys)
    return [
        [
            (chunks[k]["text"] and f"{chunks[k]['boe_id']}#{chunks[k]['article_id']}@{chunks[k]['wording']}"
             f"#{chunks[k]['part']}", s, f"{units[u]['boe_id']}#{units[u]['article_id']}@{units[u]['wording']}")
            for k, s, u in ranking
        ]
        for ranking in found
    ]  # fmt: skip


def same_ranking(got, want, tolerance: float = TOLERANCE, what: str = "") -> None:
    """Same length, scores within `tolerance` position by position, and the same chunks once chunks whose scores
    tie within the tolerance are taken as a set."""
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w), (len(g), len(w))
        assert np.allclose([s for _, s, _ in g], [s for _, s, _ in w], atol=tolerance, rtol=tolerance)
        groups_g, groups_w, start = [], [], 0
        for i in range(1, len(w) + 1):
            if i == len(w) or abs(w[i][1] - w[i - 1][1]) > tolerance:
                groups_g.append({(c, u) for c, _, u in g[start:i]})
                groups_w.append({(c, u) for c, _, u in w[start:i]})
                start = i
        if groups_g[-1:] != groups_w[-1:]:  # the last group may be cut by n differently: compare what both hold
            groups_g, groups_w = groups_g[:-1], groups_w[:-1]
        assert groups_g == groups_w, (what, g, w)


def answers(reader, queries: np.ndarray, filters: Filters, has_history: bool) -> dict:
    restriction = None
    if filters.active or has_history:
        restriction = reader.restrict(filters, in_force_only=has_history and not filters.as_of)
    expansions = ["contrato laboral"] * len(QUERIES)
    return {
        "count": None if restriction is None else restriction.count,
        "dense": stable(reader, reader.dense(queries, 128, 20, restriction)),
        "dense32": stable(reader, reader.dense(queries, 32, 15, restriction)),
        "funnel": stable(reader, reader.funnel(queries, 128, 32, 40, 20, restriction)),
        "lexical": stable(reader, reader.lexical(QUERIES, 20, restriction, None, 0.0)),
        "lexicon": stable(reader, reader.lexical(QUERIES, 20, restriction, expansions, 0.3)),
    }


def catalogue(reader) -> dict:
    """What pages and hits read of the catalogue (unit keys left out: each engine has its own)."""
    laws = reader.laws()
    boe_ids = [law["boe_id"] for law in laws]
    ce = "BOE-A-1978-31229"
    return {
        "laws": laws,
        "titles": reader.titles(),
        "law": [reader.law(b) for b in boe_ids],
        "in_force": {b: reader.units_in_force(b) for b in boe_ids},
        "wordings": [{k: v for k, v in w.items() if k != "id"} for w in reader.wordings(ce, "a135")],
        "has_unit": [reader.has_unit(ce, "a135"), reader.has_unit(ce, "a999")],
        "range_units": {b: reader.range_units(b) for b in boe_ids},
        "earlier": {b: reader.has_earlier_wordings(b) for b in boe_ids},
        "changes": reader.changes("1990-01-01", None, []),
        "changes_ce": reader.changes("2000-01-01", "2020-12-31", [ce]),
        "article_keys": reader.article_keys(),
        "unit_chunks": [(a, w) for _, a, w, _ in reader.unit_chunks(ce, ["a13", "a135"])],
        "idf": [round(reader.idf(t), 12) for t in ("huelg", "constitucion", "zzzz")],
        "live": reader.live,
        "counts": reader.manifest["counts"],
    }


def compare(pair: Pair, engine: str, queries: np.ndarray) -> None:
    """`engine` answers as the local engine does, for every filter, and reads the same catalogue."""
    reference, reader = pair.reader("local"), pair.reader(engine)
    try:
        has_history = bool(reference.manifest["counts"]["earlier_wordings"])
        for name, filters in FILTERS.items():
            want = answers(reference, queries, filters, has_history)
            got = answers(reader, queries, filters, has_history)
            assert got["count"] == want["count"], name
            for mode in ("dense", "dense32", "funnel", "lexical", "lexicon"):
                same_ranking(got[mode], want[mode], what=f"{mode} {name}")
        assert catalogue(reader) == catalogue(reference)
    finally:
        reader.close()
        reference.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_both_engines_answer_the_same_after_a_build(pair: Pair, queries, engine: str) -> None:
    compare(pair, engine, queries)


@pytest.mark.parametrize("engine", ENGINES)
def test_filters_mean_the_same_in_every_engine(pair: Pair, queries, engine: str) -> None:
    """Every hit a filter lets through satisfies it, read from its unit's row (not only 'the same as local')."""
    reader = pair.reader(engine)
    try:
        for name, filters in FILTERS.items():
            restriction = reader.restrict(filters, in_force_only=not filters.as_of)
            found = reader.dense(queries, 64, 30, restriction) + reader.lexical(QUERIES, 30, restriction, None, 0)
            units = reader.units({u for ranking in found for _, _, u in ranking})
            assert found and all(found), name
            for unit in units.values():
                law = reader.law(unit["boe_id"])
                assert not filters.laws or unit["boe_id"] in filters.laws, name
                assert not filters.rangos or law["rango"] in filters.rangos, name
                assert not filters.kinds or unit["kind"].startswith("disposicion"), name
                assert not filters.vigentes or not unit["repealed"], name
                if filters.as_of:
                    assert unit["in_force_from"] is None or unit["in_force_from"] <= filters.as_of, name
                    assert unit["version_until"] is None or filters.as_of < unit["version_until"], name
                else:
                    assert unit["wording"] == "", name
            assert all(reader.allows(restriction, k) for ranking in found for k, _, _ in ranking)
    finally:
        reader.close()


def test_unknown_filter_values_are_the_same_one_line_errors(pair: Pair) -> None:
    from legalsearch.errors import QueryError

    messages = {}
    for engine in ENGINES:
        reader = pair.reader(engine)
        try:
            for bad in (Filters(laws=("BOE-A-0000-1",)), Filters(rangos=("Decretazo",)), Filters(materias=("Pesca",))):
                with pytest.raises(QueryError) as raised:
                    reader.restrict(bad, in_force_only=True)
                messages.setdefault(engine, []).append(str(raised.value))
        finally:
            reader.close()
    assert messages["qdrant"] == messages["local"]
    assert "BOE-A-0000-1" in messages["local"][0] and "\n" not in "".join(messages["local"])


@pytest.mark.parametrize("engine", ENGINES)
def test_the_same_after_adds_changes_removals_and_a_compaction(pair: Pair, queries, engine: str) -> None:
    if engine == "local":  # the changes are applied once, to both engines, on the first run of this test
        contents = {s.law.boe_id: s for s in store.load_contents(pair.local_path).laws}
        added = indexing_law(pair, LAWS[2])
        changed = contents["BOE-A-1989-22056"]
        changed.law.title += " (texto modificado)"
        changed.law.articles[0].heading += " (modificado)"
        pair.apply(store.Change(added=[added, changed], kind="update"))
        pair.apply(store.Change(removed={"BOE-A-2023-16215"}, kind="update"))
    compare(pair, engine, queries)
    if engine == "qdrant":
        local, remote = pair.compact()
        assert local is not None and remote is not None
        compare(pair, engine, queries)
        reader = pair.reader(engine)
        try:
            assert "BOE-A-2023-16215" not in reader.titles()
            assert reader.law("BOE-A-1989-22056")["title"].endswith("(texto modificado)")
        finally:
            reader.close()


def indexing_law(pair: Pair, relative: str) -> store.StoredLaw:
    """A law as a commit adds it: parsed, chunked and embedded as `legalsearch index` does."""
    scratch = pair.root / f"scratch-{Path(relative).stem}"
    indexing.build([str(CORPORA / relative)], scratch, encoder=pair.encoder, dims=DIMS)
    return store.load_contents(scratch).laws[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_full_searches_are_the_same(pair: Pair, encoder, engine: str) -> None:
    """`LegalSearch.open` on either store: the same hits (law, unit, wording, score) in every mode, with each
    filter; fusion, legal priors and citations run above the store, so they agree too."""
    from legalsearch.search import LegalSearch

    store_of = {"local": str(pair.local_path), "qdrant": pair.spec.label}
    searches = {name: LegalSearch.open(spec, encoder=encoder) for name, spec in store_of.items()}
    for mode in ("dense", "funnel", "lexical", "hybrid"):
        for name, filters in FILTERS.items():
            for query in [*QUERIES, "artículo 28 de la Constitución"]:
                found = {
                    e: [(h.boe_id, h.article_id, h.score) for h in s.search(query, k=8, mode=mode, filters=filters)]
                    for e, s in searches.items()
                }
                got, want = found[engine], found["local"]
                assert len(got) == len(want), (mode, name, query)
                assert np.allclose([s for *_, s in got], [s for *_, s in want], atol=1e-5), (mode, name, query)
                assert [h[:2] for h in got] == [h[:2] for h in want], (mode, name, query)
