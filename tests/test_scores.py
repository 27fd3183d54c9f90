"""Scores mean what the README says, per mode, and every hit carries a relevance an agent can threshold: a real
question finds a good match, nonsense finds none, whether the dense model is strong (MiniLM) or random."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from legalsearch import indexing
from legalsearch.cli import app
from legalsearch.embedding import load_encoder, matryoshka
from legalsearch.lexical import analyze
from legalsearch.relevance import GOOD, MARGIN, NONSENSE, probe_file, probe_vectors
from legalsearch.search import LegalSearch

from .test_index_search import LAW_A, LAW_B

LAW_C = """Ley 3/2099, de arrendamientos urbanos de prueba. BOE-A-2099-3
Artículo 1. Obligaciones del arrendatario.
El arrendatario deberá pagar la renta y conservar la vivienda en buen estado.
Artículo 2. Despido.
El despido improcedente dará lugar a una indemnización de treinta y tres días de salario por año.
"""


def _index(folder: Path, model: str) -> Path:
    laws = folder / "laws"
    laws.mkdir()
    for n, text in enumerate((LAW_A, LAW_B, LAW_C), 1):
        (laws / f"BOE-A-2099-{n}.txt").write_text(text, encoding="utf-8")
    indexing.build([str(laws)], folder / "idx", model=model, dims=[32] if "tiny" in model else None,
                   backend="torch", precision="fp32")  # fmt: skip
    return folder / "idx"


@pytest.fixture(scope="module")
def search(tmp_path_factory, tiny_model) -> LegalSearch:
    return LegalSearch.open(_index(tmp_path_factory.mktemp("scores"), str(tiny_model)))


def test_dense_and_funnel_score_is_the_cosine_and_hit_cosine_agrees(search) -> None:
    for mode in ("dense", "funnel"):
        hits = search.search("vacaciones anuales retribuidas", k=3, mode=mode)
        for hit in hits:
            assert hit.cosine == pytest.approx(hit.score, abs=1e-4), mode
        vector = search.embed(["vacaciones anuales retribuidas"])
        row = search._snapshot.connection.execute("SELECT row FROM chunks WHERE boe_id = ? AND article_id = ?",
                                   (hits[0].boe_id, hits[0].article_id)).fetchone()[0]  # fmt: skip
        chunk = search._snapshot.vectors(np.array([row]))
        assert hits[0].score == pytest.approx(float(matryoshka(chunk, 32)[0] @ matryoshka(vector, 32)[0]), abs=1e-4)


def test_lexical_score_is_bm25_and_hybrid_a_fused_share_in_0_1(search) -> None:
    query = "fianza en metálico"
    [top] = search.search(query, k=1, mode="lexical", priors=None)
    index = search._snapshot.lexical
    weights = {token: 1.0 for token in analyze([query])[0]}
    row = search._snapshot.connection.execute("SELECT row FROM chunks WHERE boe_id = ? AND article_id = ?",
                               (top.boe_id, top.article_id)).fetchone()[0]  # fmt: skip
    assert top.score == pytest.approx(float(index.scores(weights)[row]), rel=1e-4) and top.cosine is None
    for query in ("fianza en metálico", "vacaciones", "plazo de diez días"):
        hits = search.search(query, k=5, mode="hybrid")
        assert all(0.0 < h.score <= 1.0 for h in hits), [h.score for h in hits]
        assert hits[0].score >= 0.5, "the first on the lexical side holds at least its share (RRF ranks were 0.016)"
        assert all(h.cosine is not None for h in hits)


@pytest.mark.parametrize("mode", ["dense", "funnel", "lexical", "hybrid"])
def test_a_real_question_is_a_good_match_and_nonsense_is_not(search, mode) -> None:
    found = search.search("vacaciones anuales retribuidas del trabajador", k=3, mode=mode)
    best = max(found, key=lambda h: h.relevance)
    assert (best.boe_id, best.article_id) == ("BOE-A-2099-1", "a1") and best.good_match and best.relevance >= GOOD
    assert {"vacaciones", "retribuidas", "trabajador"} <= set(best.matched_terms)
    nonsense = search.search("xyzzy qwerty", k=5, mode=mode)
    assert not any(h.good_match for h in nonsense), [(h.relevance, h.cosine) for h in nonsense]
    assert all(h.relevance < GOOD and h.matched_terms == [] for h in nonsense)


def test_a_word_the_lexicon_bridges_counts_as_matched(search) -> None:
    hits = search.search("obligaciones del inquilino", k=3, mode="lexical")
    top = next(h for h in hits if h.boe_id == "BOE-A-2099-3" and h.article_id == "a1")
    assert "inquilino" in top.matched_terms and top.good_match


def test_a_cited_article_is_a_good_match(search) -> None:
    [cited] = search.search("artículo 2 de la Ley 2/2099", k=1)
    assert (cited.boe_id, cited.article_id, cited.match) == ("BOE-A-2099-2", "a2", "cita")
    assert cited.relevance == 1.0 and cited.good_match


def test_the_dense_threshold_is_the_nonsense_floor_or_the_manifests(search, monkeypatch) -> None:
    probes = search.embed(list(NONSENSE))
    floors = [found[0][1] for found in search.retriever("dense", 32).rank(list(NONSENSE), probes, 1, None)]
    assert search.match_cosine(32) == pytest.approx(max(floors) + MARGIN, abs=1e-5)
    monkeypatch.setitem(search.manifest["defaults"], "match_cosine", -1.0)  # every cosine beats it: all good
    assert all(h.good_match for h in search.search("xyzzy qwerty", k=5, mode="dense"))
    monkeypatch.setitem(search.manifest["defaults"], "match_cosine", {"32": 2.0})  # none does: lexical decides
    hits = search.search("vacaciones anuales retribuidas del trabajador", k=5, mode="dense")
    assert [h.good_match for h in hits] == [("vacaciones" in h.matched_terms) for h in hits]


def test_the_nonsense_probes_are_embedded_once_per_model(search, monkeypatch) -> None:
    first = probe_vectors(search.encoder)
    assert probe_file(search.encoder).is_file()
    monkeypatch.setattr(search.encoder, "encode", lambda *a, **k: pytest.fail("embedded again"))
    assert np.array_equal(probe_vectors(search.encoder), first), "read back from the cache"
    probe_file(search.encoder).write_bytes(b"damaged")
    monkeypatch.undo()
    assert np.allclose(probe_vectors(search.encoder), first, atol=1e-6), "a damaged cache is embedded again"
    assert np.array_equal(np.load(probe_file(search.encoder)), probe_vectors(search.encoder))


def test_ask_shows_relevance_and_says_when_nothing_matches(search) -> None:
    runner = CliRunner()
    index = str(search.path)
    nonsense = runner.invoke(app, ["ask", "xyzzy qwerty", "--index", index])
    assert nonsense.exit_code == 0 and nonsense.stdout.startswith("No good match:"), nonsense.output
    real = runner.invoke(app, ["ask", "vacaciones anuales retribuidas", "--index", index, "--mode", "lexical"])
    assert "No good match" not in real.stdout and real.stdout.startswith("1. 1.00  Art. 1 · "), real.stdout
    lexical = runner.invoke(app, ["ask", "xyzzy qwerty", "--index", index, "--mode", "lexical"])
    assert lexical.stdout.startswith("No good match: no unit holds any word of the question"), lexical.stdout
    hits = json.loads(runner.invoke(app, ["ask", "xyzzy qwerty", "--index", index, "--json"]).stdout)
    assert hits and all({"relevance", "good_match", "cosine", "matched_terms"} <= set(h) for h in hits)
    assert not any(h["good_match"] for h in hits)


def test_with_a_real_model_off_topic_questions_find_no_good_match(tmp_path, minilm) -> None:
    search = LegalSearch.open(_index(tmp_path, str(minilm)), encoder=load_encoder(str(minilm)))
    for query in ("flibber jabberwock quux", "cómo hacer una tortilla de patatas", "who won the football match"):
        for mode in ("dense", "hybrid"):
            hits = search.search(query, k=5, mode=mode)
            assert not any(h.good_match for h in hits), (query, mode, [(h.relevance, h.cosine) for h in hits])
    for query in ("vacaciones anuales retribuidas", "indemnización por despido improcedente"):
        hits = search.search(query, k=3, mode="hybrid")
        assert hits[0].good_match, (query, [(h.article_id, h.relevance, h.cosine) for h in hits])
