"""Search modes (dense, funnel, lexical, hybrid), citation lookup, filters before the top-k cut, quantized
indexes — with the tiny test model, whose vectors carry no meaning: what is asserted holds for any model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from legalsearch import indexing, store
from legalsearch.cli import app
from legalsearch.embedding import matryoshka
from legalsearch.errors import QueryError
from legalsearch.retrievers import RRF_K
from legalsearch.search import SEARCH_MODES, Filters, LegalSearch
from legalsearch.testing import segment_folder

from .test_fetch_and_cli import METADATA, TEXTO
from .test_index_search import LAW_A, LAW_B, long_article_law

runner = CliRunner()
REPEALED = METADATA.replace(
    b"<estatus_derogacion>N</estatus_derogacion>", b"<estatus_derogacion>S</estatus_derogacion>"
)
REPEALED = REPEALED.replace(b"BOE-A-2099-1", b"BOE-A-2099-9").replace(b"Ley 1/2099", b"Ley 9/2099")
API_LAW = METADATA.replace(b"</data></response>", b"") + TEXTO.split(b"<data>", 1)[1]


def chunk_rows(search: LegalSearch, hit) -> list[int]:
    """The global rows of the chunks of a hit's unit (the local engine's snapshot)."""
    query = "SELECT row FROM chunks WHERE boe_id = ? AND article_id = ? AND wording = '' ORDER BY row"
    return [r[0] for r in search._snapshot.connection.execute(query, (hit.boe_id, hit.article_id))]


@pytest.fixture(scope="module")
def index(tmp_path_factory, encoder) -> Path:
    folder = tmp_path_factory.mktemp("modes")
    laws = folder / "laws"
    laws.mkdir()
    (laws / "BOE-A-2099-1.xml").write_bytes(API_LAW)  # articles in force from 2099 and from 2100
    (laws / "BOE-A-2099-2.txt").write_text(LAW_B, encoding="utf-8")
    (laws / "BOE-A-2099-3.txt").write_text(long_article_law(12), encoding="utf-8")
    repealed = (
        REPEALED.replace(b"</data></response>", b"")
        + TEXTO.replace(b"BOE-A-2099-1", b"BOE-A-2099-9").split(b"<data>", 1)[1]
    )
    (laws / "BOE-A-2099-9.xml").write_bytes(repealed)
    (laws / "BOE-A-2099-4.txt").write_text(LAW_A.replace("BOE-A-2099-1", "BOE-A-2099-4"), encoding="utf-8")
    indexing.build([str(laws)], folder / "idx", encoder=encoder, max_tokens=96)
    return folder / "idx"


@pytest.fixture(scope="module")
def search(index, encoder) -> LegalSearch:
    return LegalSearch.open(index, encoder=encoder)


def keys(hits) -> list[tuple[str, str]]:
    return [(h.boe_id, h.article_id) for h in hits]


def test_lexical_mode_folds_accents_stems_and_ignores_stopwords(search) -> None:
    hits = search.search("LOS ESPANOLES MAYORIA EDAD", k=3, mode="lexical")
    assert keys(hits)[0] == ("BOE-A-2099-4", "a2")  # "Los españoles son mayores de edad …"
    assert all(h.match == "lexical" for h in hits)
    assert search.search("fianzas metálicas", k=1, mode="lexical")[0].article_id == "a2"
    assert search.search("de la los", k=3, mode="lexical") == [], "only stopwords: nothing to match"


def test_hybrid_is_reciprocal_rank_fusion_of_both_rankings(search, encoder, monkeypatch) -> None:
    dense = [[(1, 0.9, 10), (2, 0.8, 20), (3, 0.7, 30)]]
    lexical = [[(3, 12.0, 31), (4, 11.0, 40), (1, 10.0, 11)]]
    monkeypatch.setitem(search.manifest["defaults"], "hybrid_weights", {"dense": 1.0, "lexical": 1.0})
    monkeypatch.setitem(search.manifest["defaults"], "agreement_gate", (0.0, 0.0))  # no gate: plain RRF
    hybrid = search.retriever("hybrid", 128)
    monkeypatch.setattr(hybrid.dense, "rank", lambda *a, **k: dense)
    monkeypatch.setattr(hybrid.lexical, "rank", lambda *a, **k: lexical)
    fused = hybrid.rank(["q"], np.zeros((1, 128), dtype=np.float32), 4, None)[0]
    expected = {1: 1 / (RRF_K + 1) + 1 / (RRF_K + 3), 2: 1 / (RRF_K + 2), 3: 1 / (RRF_K + 3) + 1 / (RRF_K + 1),
                4: 1 / (RRF_K + 2)}  # fmt: skip
    assert [a for a, _, _ in fused] == sorted(expected, key=lambda a: (-expected[a], a))
    best_possible = 2 / (RRF_K + 1)  # first on both sides: the fused score is a share of it, in [0, 1]
    assert {a: s for a, s, _ in fused} == pytest.approx({a: s / best_possible for a, s in expected.items()})


def test_hybrid_finds_what_either_side_finds(search) -> None:
    lexical_top = search.search("fianza en metálico", k=1, mode="lexical")[0]
    hybrid = search.search("fianza en metálico", k=5, mode="hybrid")
    assert (lexical_top.boe_id, lexical_top.article_id) in keys(hybrid)
    assert len(set(keys(hybrid))) == len(hybrid)


def test_funnel_equals_exact_full_dim_search_when_the_shortlist_covers_the_corpus(search, encoder) -> None:
    query = "notificaciones electrónicas"
    exact = search.search(query, k=5, mode="dense")
    funnel = search.search(query, k=5, mode="funnel", shortlist=10_000)
    assert [h.score for h in funnel] == pytest.approx([h.score for h in exact], abs=1e-5)
    # the same articles in the same order, except where two scores tie (the tiny random model makes ties)
    tied = {i for i, a in enumerate(exact) for b in exact if a is not b and abs(a.score - b.score) < 1e-5}
    assert [key for i, key in enumerate(keys(funnel)) if i not in tied] == [
        key for i, key in enumerate(keys(exact)) if i not in tied
    ]
    assert set(keys(funnel)) == set(keys(exact)) or tied
    assert search.funnel_dim(128) == 64
    narrow = search.search(query, k=5, mode="funnel", shortlist=5)
    assert len(narrow) == 5 and all(h.match == "funnel" for h in narrow)


@pytest.mark.parametrize("kind", ["hnsw", "flat"])
def test_funnel_rescores_with_the_cosines_of_the_vector_file(index, encoder, tmp_path, kind) -> None:
    target = tmp_path / kind
    indexing.build([str(index.parent / "laws")], target, encoder=encoder, max_tokens=96, faiss_kind=kind)
    search = LegalSearch.open(target, encoder=encoder)
    full = np.load(segment_folder(target) / "vectors.f16.npy", allow_pickle=False).astype(np.float32)
    query = "vacaciones anuales retribuidas"
    vector = matryoshka(encoder.encode([query]), 128)[0]
    hits = search.search(query, k=4, mode="funnel", shortlist=1000)
    ((_, segment),) = search._snapshot.opened
    flat = kind == "flat"
    assert (segment.float_rows(128) is not None) == flat, "read from a flat float FAISS index, else the float16 file"
    for hit in hits:  # the float index's rows are the file's vectors, re-normalised: the same cosines
        rows = chunk_rows(search, hit)
        assert hit.score == pytest.approx(float((matryoshka(full[rows], 128) @ vector).max()), abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("artículo 2 de la Ley 2/2099", ("BOE-A-2099-2", "a2")),
        ("¿qué dice el art. 1 de la Ley 3/2099 sobre notificaciones?", ("BOE-A-2099-3", "a1")),
        ("art. 1.2 Ley 2/2099", ("BOE-A-2099-2", "a1")),
    ],
)
def test_a_cited_article_comes_first_then_semantic_results(search, query, expected) -> None:
    hits = search.search(query, k=4, mode="hybrid")
    assert keys(hits)[0] == expected and hits[0].match == "cita" and hits[0].rank == 1
    assert len(hits) == 4 and len(set(keys(hits))) == 4 and [h.rank for h in hits] == [1, 2, 3, 4]


def test_citation_of_a_missing_article_or_an_ambiguous_law_is_ignored(search) -> None:
    assert all(h.match != "cita" for h in search.search("artículo 99 de la Ley 2/2099", k=3))
    # two laws of the index are "Ley 1/2099": no guess
    assert all(h.match != "cita" for h in search.search("artículo 1 de la Ley 1/2099", k=3))


def test_filters_act_before_the_top_k_cut(search) -> None:
    for mode in ("dense", "funnel", "lexical", "hybrid"):
        hits = search.search("vacaciones anuales y fianza", k=1, mode=mode, filters=Filters(laws=("BOE-A-2099-2",)))
        assert len(hits) == 1 and hits[0].boe_id == "BOE-A-2099-2", mode
        hits = search.search("entrada en vigor", k=10, mode=mode, filters=Filters(kinds=("disposiciones",)))
        assert hits and all(h.kind.startswith("disposicion") for h in hits), mode
    everything = search.search("Texto reformado", k=50, mode="lexical")
    assert "BOE-A-2099-9" in {h.boe_id for h in everything}
    vigentes = search.search("Texto reformado", k=50, mode="lexical", filters=Filters(vigentes=True))
    assert vigentes and "BOE-A-2099-9" not in {h.boe_id for h in vigentes}, "the repealed law is left out"
    in_2099 = search.search("Texto", k=50, mode="dense", filters=Filters(laws=("BOE-A-2099-1",), as_of="2099-06-01"))
    assert keys(in_2099) == [], "both articles' indexed wording came into force in 2100"
    in_2101 = search.search("Texto", k=50, mode="dense", filters=Filters(laws=("BOE-A-2099-1",), as_of="2101-01-01"))
    assert set(keys(in_2101)) == {("BOE-A-2099-1", "a1"), ("BOE-A-2099-1", "a2")}
    assert search.search("Ley", k=5, filters=Filters(kinds=("anexo",))) == []
    ranged = search.search("fianza", k=5, filters=Filters(rangos=("ley",)))
    assert {h.boe_id for h in ranged} == {"BOE-A-2099-1", "BOE-A-2099-9"}, "only the API laws carry a rango"


def test_errors_list_the_valid_modes_and_filters(search) -> None:
    with pytest.raises(QueryError, match="unknown mode 'semantic'; choose one of dense, funnel, lexical, hybrid"):
        search.search("x", mode="semantic")
    with pytest.raises(QueryError, match="unknown kind 'ley'; choose among articulos, disposiciones, articulo"):
        search.search("x", filters=Filters(kinds=("ley",)))
    with pytest.raises(QueryError, match="law BOE-A-1-1 is not in this index; it holds BOE-A-2099-1"):
        search.search("x", filters=Filters(laws=("BOE-A-1-1",)))
    with pytest.raises(QueryError, match="rango Orden not in this index; choose among Ley"):
        search.search("x", filters=Filters(rangos=("Orden",)))
    with pytest.raises(QueryError, match="give a date as YYYY-MM-DD"):
        search.search("x", filters=Filters(as_of="ayer"))


@pytest.mark.parametrize("quantize", ["int8", "binary"])
def test_quantized_indexes_are_rescored_in_full_precision(index, encoder, tmp_path, quantize) -> None:
    target = tmp_path / quantize
    report = indexing.build([str(index.parent / "laws")], target, encoder=encoder, max_tokens=96, quantize=quantize)
    assert report.embedded == report.chunks
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["faiss"]["quantize"] == quantize
    assert manifest["faiss"]["factory"]["64"] == {"int8": "SQ8", "binary": "BFlat"}[quantize]
    quantized = LegalSearch.open(target, encoder=encoder)
    exact = LegalSearch.open(index, encoder=encoder)
    full = np.load(segment_folder(target) / "vectors.f16.npy", allow_pickle=False).astype(np.float32)
    for query in ("vacaciones anuales", "fianza", "notificaciones electrónicas"):
        hits = quantized.search(query, k=3, dim=64, mode="dense")
        vector = matryoshka(encoder.encode([query]), 64)[0]
        for hit in hits:  # every score is the float cosine at that dim, not a quantized one
            rows = chunk_rows(quantized, hit)
            assert hit.score == pytest.approx(float((matryoshka(full[rows], 64) @ vector).max()), abs=1e-4)
        assert keys(hits)[0] == keys(exact.search(query, k=3, dim=64, mode="dense"))[0]


def test_cli_modes_and_filters(index, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LEGALSEARCH_INDEX", str(index))
    result = runner.invoke(app, ["ask", "fianza", "--mode", "lexical", "--law", "BOE-A-2099-2", "--json"])
    assert result.exit_code == 0, result.output
    assert {h["boe_id"] for h in json.loads(result.stdout)} == {"BOE-A-2099-2"}
    result = runner.invoke(app, ["ask", "artículo 1 de la Ley 2/2099"])
    assert "(cita)" in result.stdout.splitlines()[0]
    result = runner.invoke(app, ["ask", "fianza", "--kind", "anexo"])
    assert result.exit_code == 0 and "No results: no unit matches the filters." in result.stdout
    result = runner.invoke(app, ["ask", "fianza", "--mode", "bm25"])
    assert result.exit_code == 2 and "choose one of dense, funnel, lexical, hybrid" in result.stderr


def test_reindexing_as_of_another_date_reads_the_source_again(index, encoder, tmp_path) -> None:
    source = index.parent / "laws" / "BOE-A-2099-1.xml"
    target = tmp_path / "idx"
    indexing.build([str(source)], target, encoder=encoder)
    again = indexing.build([str(source)], target, encoder=encoder, as_of="2099-06-01")
    assert not again.up_to_date and again.parsed_sources == 1
    earlier = LegalSearch.open(target, encoder=encoder)
    assert earlier.article("BOE-A-2099-1", "a1")["text"] == "Texto original."
    assert earlier.article("BOE-A-2099-1", "a2") is None, "article 2 came into force in 2100"


def test_history_searches_the_law_as_it_read_on_a_date(encoder, tmp_path) -> None:
    source = tmp_path / "BOE-A-2099-1.xml"
    source.write_bytes(API_LAW)  # a1: "Texto original." from 2099-01-03, "Texto reformado." from 2100-01-06; a2 added
    target = tmp_path / "idx"
    report = indexing.build([str(source)], target, encoder=encoder, history=True)
    assert (report.articles, report.earlier_wordings, report.chunks) == (2, 1, 3)
    search = LegalSearch.open(target, encoder=encoder)
    for mode in SEARCH_MODES:
        now = search.search("Texto de pruebas", k=10, mode=mode)
        assert sorted(keys(now)) == [("BOE-A-2099-1", "a1"), ("BOE-A-2099-1", "a2")], mode
        assert {h.text for h in now} == {"Texto reformado.", "Nuevo."} and all(h.version_until is None for h in now)
        then = search.search("Texto de pruebas", k=10, mode=mode, filters=Filters(as_of="2099-06-01"))
        assert keys(then) == [("BOE-A-2099-1", "a1")] and then[0].text == "Texto original.", mode
        assert (then[0].version_date, then[0].version_until) == ("2099-01-03", "2100-01-06")
        assert then[0].url == "https://www.boe.es/buscar/act.php?id=BOE-A-2099-1&tn=1&p=20990103#a1"
        assert then[0].citation.endswith("(BOE-A-2099-1), redacción vigente del 2099-01-03 al 2100-01-06")
    on_the_day = search.search("Texto de pruebas", k=10, filters=Filters(as_of="2100-01-06"))
    assert {h.text for h in on_the_day} == {"Texto reformado.", "Nuevo."}, "a wording is in force from its own day"
    assert search.search("Texto de pruebas", k=10, filters=Filters(as_of="2099-01-02")) == [], (
        "nothing was in force yet"
    )

    cited_then = search.search("artículo 1 de la Ley 1/2099", k=2, filters=Filters(as_of="2099-06-01"))
    assert cited_then[0].match == "cita" and cited_then[0].text == "Texto original." and len(cited_then) == 1
    cited_now = search.search("artículo 1 de la Ley 1/2099", k=2)
    assert cited_now[0].match == "cita" and cited_now[0].text == "Texto reformado."

    assert search.article("BOE-A-2099-1", "a1")["text"] == "Texto reformado."
    assert search.article("BOE-A-2099-1", "a1", as_of="2099-06-01")["text"] == "Texto original."
    wordings = search.article("BOE-A-2099-1", "a1")["wordings"]
    assert [(w["version_date"], w["version_until"]) for w in wordings] == [
        ("2099-01-03", "2100-01-06"), ("2100-01-06", None),
    ]  # fmt: skip
    assert search.article("BOE-A-2099-1", "a2", as_of="2099-06-01") is None, "article 2 came into force in 2100"
    assert [u["article_id"] for u in search.law("BOE-A-2099-1")["units"]] == ["a1", "a2"]
    assert search.laws()[0]["articles"] == 2 and search.article_keys() == {"BOE-A-2099-1#a1", "BOE-A-2099-1#a2"}

    again = indexing.build([str(source)], target, encoder=encoder)  # without --history: read again, wordings gone
    assert again.parsed_sources == 1 and again.earlier_wordings == 0 and again.embedded == 0 and again.chunks == 2


def test_cli_history_and_as_of(encoder, tiny_model, tmp_path, monkeypatch) -> None:
    source = tmp_path / "BOE-A-2099-1.xml"
    source.write_bytes(API_LAW)
    monkeypatch.setenv("LEGALSEARCH_INDEX", str(tmp_path / "idx"))
    result = runner.invoke(app, ["index", str(source), "--model", str(tiny_model), "--history"])
    assert result.exit_code == 0, result.output
    assert "2 units (and 1 earlier wordings), 3 chunks" in result.stdout
    result = runner.invoke(app, ["ask", "Texto", "--as-of", "2099-06-01", "--mode", "lexical"])
    assert result.exit_code == 0, result.output
    assert "redacción vigente del 2099-01-03 al 2100-01-06" in result.stdout and "p=20990103#a1" in result.stdout
    result = runner.invoke(app, ["ask", "Texto", "--as-of", "2099-06-01", "--json"])
    assert [(h["article_id"], h["version_until"]) for h in json.loads(result.stdout)] == [("a1", "2100-01-06")]
    result = runner.invoke(app, ["parse", str(source), "--history", "--no-table"])
    assert "1 earlier wordings of 1 units" in result.stdout


def _as_format(index: Path, version: int) -> None:
    """Rewrite an index folder as format 1 (no wording keys, no status), 2 (no status) or 3 (one vector file,
    counts and files in the manifest, no segments) wrote it, to test the upgrade. Formats 1 and 2 carried no
    "format" marker."""
    import sqlite3

    from legalsearch import store

    manifest = store.read_manifest(index)
    (segment,) = manifest["segments"]
    folder = index / "segments" / segment["name"]
    shutil.copy(folder / "vectors.f16.npy", index / store.LEGACY_VECTORS)
    shutil.rmtree(index / "segments")
    worded = ", version_until, wording" if version == 2 else ""
    connection = sqlite3.connect(index / store.DATABASE)
    connection.executescript("DROP TABLE segments; DROP TABLE deleted; DROP TABLE sources; DROP TABLE commits;")
    if version < 3:
        connection.executescript(
            f"""
            CREATE TABLE old_articles AS SELECT id, boe_id, article_id, position, kind, number, heading, path, text,
                url, anchor, notes, version_date, version_published, version_norma{worded}, content_hash FROM articles;
            DROP TABLE articles; ALTER TABLE old_articles RENAME TO articles;
            CREATE TABLE old_chunks AS SELECT row, chunk_id, boe_id, article_id{worded and ", wording"}, part, text,
                content_hash FROM chunks;
            DROP TABLE chunks; ALTER TABLE old_chunks RENAME TO chunks;
            """
        )
    connection.commit()
    connection.close()
    manifest["format_version"] = version
    for key in ("segments", "commit"):
        del manifest[key]
    if version < 3:
        del manifest["format"]
    if version == 1:
        del manifest["counts"]["earlier_wordings"]
    manifest["files"] = {
        name: {"bytes": (index / name).stat().st_size, "sha256": store.sha256_file(index / name)}
        for name in (store.DATABASE, store.LEGACY_VECTORS)
    }
    (index / store.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_old_format_index_is_upgraded_by_indexing_again_without_embedding(index, encoder, tmp_path, version) -> None:

    from legalsearch.errors import IndexFormatError

    old = tmp_path / "old"
    shutil.copytree(index, old)
    before = LegalSearch.open(old, encoder=encoder).search("vacaciones anuales", k=5, mode="hybrid")
    _as_format(old, version)
    with pytest.raises(
        IndexFormatError, match=f"index format {version}; upgrade it to format 4 by running `legalsearch"
    ):
        LegalSearch.open(old, encoder=encoder)
    report = indexing.build([str(index.parent / "laws")], old, encoder=encoder)
    assert not report.up_to_date and report.embedded == 0 and report.unchanged_sources == 5
    upgraded = LegalSearch.open(old, encoder=encoder)
    assert upgraded.manifest["format_version"] == 4 and upgraded.manifest["format"] == "legalsearch-index"
    assert not (old / store.LEGACY_VECTORS).exists() and len(upgraded.manifest["segments"]) == 1
    assert [h.to_dict() for h in upgraded.search("vacaciones anuales", k=5, mode="hybrid")] == [
        h.to_dict() for h in before
    ]


def test_a_day_before_a_law_came_into_force_finds_none_of_its_units(tmp_path, encoder) -> None:
    """A consolidated text without wording dates (HTML, PDF, Markdown) holds the law as it stands: a day before
    the law came into force finds none of its units, in searches and in article lookups."""
    source = tmp_path / "BOE-A-2099-77.md"
    source.write_text(
        "---\nboe_id: BOE-A-2099-77\ntitle: Ley 77/2099, de pruebas\nentry_into_force: 2099-03-01\n---\n"
        "# Ley 77/2099, de pruebas\n\n## Artículo 1. Objeto.\n\nTexto de la ley de pruebas sobre fianzas.\n",
        encoding="utf-8",
    )
    target = tmp_path / "idx"
    indexing.build([str(source)], target, encoder=encoder)
    search = LegalSearch.open(target, encoder=encoder)
    assert search.law("BOE-A-2099-77")["fecha_vigencia"] == "2099-03-01"
    for mode in ("dense", "lexical", "hybrid"):
        assert search.search("fianzas", k=5, mode=mode, filters=Filters(as_of="2099-02-28")) == [], mode
        assert search.search("fianzas", k=5, mode=mode, filters=Filters(as_of="2099-03-01")), mode
    assert search.article("BOE-A-2099-77", "a1", as_of="2099-02-28") is None
    assert search.article("BOE-A-2099-77", "a1", as_of="2099-03-01")["text"].startswith("Texto de la ley")
