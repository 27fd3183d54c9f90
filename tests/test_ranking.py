"""Ranking that knows the law: each legal prior, the law a question names, the agreement gate of the fusion, the
reranker and `calibrate` change rankings as intended on small fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from legalsearch import indexing
from legalsearch.citations import named_law
from legalsearch.cli import app
from legalsearch.ranking import Candidate, Priors, apply
from legalsearch.retrievers import agreement_weight
from legalsearch.search import LegalSearch

runner = CliRunner()


def cand(article: int, kind: str = "articulo", boe_id: str = "BOE-A-1", rango: str | None = "Ley",
         repealed: bool = False, text: str | None = None) -> Candidate:  # fmt: skip
    return Candidate(article, 1.0, article, kind, boe_id, rango, repealed, text or f"texto distinto número {article}")


def order(candidates, query="plazo", named=None, **priors) -> list[int]:
    return [c.article for c in apply(candidates, Priors(**{**Priors.none().to_dict(), **priors}), query, named)]


def test_each_prior_reorders_as_intended() -> None:
    transitory = [cand(1, "disposicion_transitoria"), cand(2)]
    assert order(transitory) == [1, 2], "all priors off: the retriever's order"
    assert order(transitory, operative=0.6) == [2, 1], "an operative article over a disposición transitoria"
    assert order(transitory, "régimen de la disposición transitoria", operative=0.6) == [1, 2], "unless asked for"
    assert order([cand(1, repealed=True), cand(2)], repealed=0.5) == [2, 1]
    assert order([cand(1, rango="Orden"), cand(2, rango="Ley Orgánica")], rango=0.2) == [2, 1]
    assert order([cand(1, rango="Orden"), cand(5, rango="Ley Orgánica")], rango=0.02) == [1, 5], "only a tie-break"
    assert order([cand(1), cand(2, boe_id="BOE-A-2")], named="BOE-A-2", law_boost=2.0) == [2, 1]
    same = "el trabajador tendrá derecho a vacaciones anuales retribuidas de treinta días"
    crowd = [cand(1, text=same), cand(2, text=same + " naturales"), *(cand(i) for i in range(3, 14))]
    assert order(crowd, diversity=0.9).index(2) == 10, "a near-duplicate of a better hit goes after the top ten"
    assert order(crowd).index(2) == 1


def test_the_law_a_question_names_is_found_anywhere_in_it() -> None:
    titles = {"BOE-A-2015-11430": "Real Decreto Legislativo 2/2015, … Estatuto de los Trabajadores.",
              "BOE-A-2015-10565": "Ley 39/2015, de 1 de octubre, del Procedimiento Administrativo Común.",
              "BOE-A-1978-31229": "Constitución Española."}  # fmt: skip
    assert named_law("vacaciones en el Estatuto de los Trabajadores", titles) == "BOE-A-2015-11430"
    assert named_law("según la LPAC, ¿cuál es el plazo?", titles) == "BOE-A-2015-10565"
    assert named_law("recurso de alzada Ley 39/2015", titles) == "BOE-A-2015-10565"
    assert named_law("plazo del recurso de alzada", titles) is None
    assert named_law("la CE y el ET", titles) is None, "two laws named: none boosted"


def test_the_agreement_gate_drops_a_dense_side_that_agrees_with_nothing() -> None:
    lexical = [(a, 1.0, a) for a in range(50)]
    assert agreement_weight([(a, 1.0, a) for a in range(1000, 1050)], lexical, (0.05, 0.15)) == 0.0
    assert agreement_weight([(a, 1.0, a) for a in range(40, 90)], lexical, (0.05, 0.15)) == 1.0
    assert agreement_weight([(a, 1.0, a) for a in range(45, 95)], lexical, (0.05, 0.15)) == pytest.approx(0.5)
    few = [(a, 1.0, a) for a in range(3)]  # BM25 found 3: sharing them all is 3 of 50
    assert agreement_weight([(a, 1.0, a) for a in range(50)], few, (0.05, 0.15)) == pytest.approx(0.1)


OPERATIVE = """Ley 7/2099, de plazos de prueba. BOE-A-2099-7
Artículo 1. Plazo de solicitud.
El plazo para solicitar la prestación será de quince días.
Disposición transitoria primera. Plazo de solicitud en los procedimientos iniciados.
El plazo de solicitud de la prestación en los procedimientos iniciados antes de esta ley será el plazo de solicitud de quince días de la ley anterior.
"""  # noqa: E501


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_model) -> Path:
    from .test_index_search import LAW_A, LAW_B

    folder = tmp_path_factory.mktemp("ranking")
    words = [
        "contrato",
        "empresa",
        "registro",
        "tribunal",
        "sociedad",
        "impuesto",
        "municipio",
        "licencia",
        "patente",
        "vehículo",
    ]
    filler = "\n".join(f"Artículo {n}. Materia {n}.\nEl {words[n % 10]} y el {words[(n * 3) % 10]} número {n}."
                        for n in range(1, 151))  # fmt: skip
    laws = {"BOE-A-2099-7": OPERATIVE, "BOE-A-2099-1": LAW_A, "BOE-A-2099-2": LAW_B,
            "BOE-A-2099-9": f"Ley 9/2099, de materias varias. BOE-A-2099-9\n{filler}\n"}  # fmt: skip
    for name, text in laws.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    indexing.build([str(folder / f"{n}.txt") for n in laws], folder / "idx", model=str(tiny_model), dims=[32],
                   backend="torch", precision="fp32")  # fmt: skip
    return folder / "idx"


def test_priors_and_law_detection_through_search(index) -> None:
    search = LegalSearch.open(index)
    assert search.manifest["defaults"]["priors"] == Priors().to_dict(), "recorded in the manifest"
    query = "plazo de solicitud de la prestación"
    plain = search.search(query, k=2, mode="lexical", priors=Priors.none())
    assert [h.article_id for h in plain] == ["dt1", "a1"], "BM25 alone prefers the transitoria (more matches)"
    ranked = [h.article_id for h in search.search(query, k=5, mode="lexical")]
    assert ranked[0] == "a1" and "dt1" in ranked, "after the operative article, still found"
    asked = search.search(query + " disposición transitoria", k=2, mode="lexical")
    assert asked[0].article_id == "dt1"
    named = search.search("duración de la Ley 2/2099", k=3, mode="lexical")
    assert named[0].boe_id == "BOE-A-2099-2"


def test_hybrid_with_a_random_dense_side_ranks_as_lexical(index) -> None:
    search = LegalSearch.open(index)
    queries = ["plazo de solicitud", "vacaciones anuales", "fianza en metálico"]
    noise = np.random.default_rng(1).normal(size=(3, 128)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    lexical = search.search_many(queries, k=3, mode="lexical", priors=Priors.none())  # the gate alone
    hybrid = search.search_many(queries, k=3, mode="hybrid", vectors=noise, priors=Priors.none())
    for fused, alone in zip(hybrid, lexical, strict=True):  # BM25's articles first, in BM25's order
        assert [h.article_id for h in fused][: len(alone)] == [h.article_id for h in alone]
        assert len(fused) == 3, "the dense side still fills the list after them"


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory) -> Path:
    from legalsearch.testing import build_random_xlmr

    from .conftest import TRAINING_TEXT

    return build_random_xlmr(tmp_path_factory.mktemp("reranker"), TRAINING_TEXT, "tiny", cross_encoder=True)


def test_the_reranker_orders_the_first_hits_by_its_own_scores(index, cross_encoder) -> None:
    from sentence_transformers import CrossEncoder

    search = LegalSearch.open(index)
    query = "plazo de solicitud de la prestación"
    before = search.search(query, k=5, mode="lexical")
    after = search.search(query, k=5, mode="lexical", rerank=str(cross_encoder), rerank_depth=5)
    expected = CrossEncoder(str(cross_encoder)).predict([(query, h.matched_text) for h in before])
    assert sorted(h.article_id for h in after) == sorted(h.article_id for h in before)
    assert [h.score for h in after] == sorted((round(float(s), 6) for s in expected), reverse=True)
    assert [h.rank for h in after] == list(range(1, len(before) + 1))
    result = runner.invoke(
        app, ["ask", query, "--index", str(index), "--mode", "lexical", "--rerank", str(cross_encoder), "--json"]
    )
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["score"] == pytest.approx(max(expected), abs=1e-5)
    result = runner.invoke(app, ["ask", query, "--index", str(index), "--rerank", "/no/such/reranker"])
    assert result.exit_code == 1 and "no reranker folder at /no/such/reranker" in result.stderr


def test_calibrate_writes_measured_defaults_that_updates_keep(index, tmp_path, tiny_model) -> None:
    work = tmp_path / "idx"
    import shutil

    shutil.copytree(index, work)
    questions = tmp_path / "q.jsonl"
    rows = [("¿cuántos días de vacaciones?", "BOE-A-2099-1", "1"), ("fianza en metálico", "BOE-A-2099-2", "2"),
            ("plazo de solicitud de la prestación", "BOE-A-2099-7", "1")]  # fmt: skip
    questions.write_text("".join(json.dumps({"question": q, "boe_id": b, "article": a}) + "\n" for q, b, a in rows))
    result = runner.invoke(app, ["calibrate", str(questions), "--index", str(work), "--dry-run"])
    assert result.exit_code == 0 and "not changed" in result.stdout
    assert "calibration" not in json.loads((work / "manifest.json").read_text())["defaults"]
    result = runner.invoke(app, ["calibrate", str(questions), "--index", str(work)])
    assert result.exit_code == 0, result.output
    defaults = json.loads((work / "manifest.json").read_text())["defaults"]
    table = defaults["calibration"]["table"]
    assert {r["mode"] for r in table} == {"dense", "lexical", "hybrid"} and defaults["calibration"]["questions"] == 3
    best = max(r["mrr@10"] for r in table)
    chosen = [r for r in table if r["mode"] == defaults["mode"]]
    assert max(r["mrr@10"] for r in chosen) == best, "the default is the best measured"
    assert LegalSearch.open(work).default_mode == defaults["mode"]
    (tmp_path / "BOE-A-2099-8.txt").write_text("Ley 8/2099. BOE-A-2099-8\nArtículo 1. Uno.\nTexto.\n")
    indexing.build([str(tmp_path / "BOE-A-2099-8.txt")], work)
    assert json.loads((work / "manifest.json").read_text())["defaults"]["calibration"] == defaults["calibration"]


def test_a_year_named_in_the_question_searches_the_wording_of_that_time(tiny_model, tmp_path) -> None:
    from legalsearch.citations import named_day

    from .conftest import CORPORA

    assert named_day("¿qué decía el artículo 135 en 2010?") == "2010-12-31"
    assert named_day("antes de la reforma de 2011") == "2010-12-31"
    assert named_day("plazo según la Ley 39/2015") is None and named_day("Real Decreto de 1 de octubre de 2015") is None
    source = CORPORA / "xml" / "BOE-A-1978-31229.texto.xml"
    if not source.exists():
        pytest.skip(f"real BOE corpus not found at {CORPORA}")
    indexing.build([str(source)], tmp_path / "ce", model=str(tiny_model), dims=[32], history=True)
    search = LegalSearch.open(tmp_path / "ce")
    [then] = search.search("artículo 135 CE antes de la reforma de 2011", k=1, mode="lexical")
    assert (then.article_id, then.version_until) == ("a135", "2011-09-27"), "the 1978 wording"
    [now] = search.search("artículo 135 CE", k=1, mode="lexical")
    assert (now.article_id, now.version_until) == ("a135", None)


def test_eval_ablate_reports_each_component(index, tmp_path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"question": "plazo de solicitud", "boe_id": "BOE-A-2099-7", "article": "1"}) + "\n"
    )
    result = runner.invoke(app, ["eval", str(questions), "--index", str(index), "--ablate", "--mode", "lexical"],
                           terminal_width=200)  # fmt: skip
    assert result.exit_code == 0, result.output
    for variant in ("default", "no operative", "no repealed", "no rango", "no law_boost", "no diversity",
                    "no priors", "no lexicon"):  # fmt: skip
        assert variant in result.stdout


def test_defaults_are_recorded_per_model(minilm) -> None:
    from legalsearch.embedding import DEFAULT_MODEL, _local_revision
    from legalsearch.indexing import defaults_for

    assert defaults_for(DEFAULT_MODEL, 1024)["hybrid_weights"] == {"dense": 1.0, "lexical": 1.0}
    packaged = defaults_for(str(minilm), 384, None, _local_revision(minilm))  # recognised by its fingerprint
    assert (packaged["mode"], packaged["hybrid_weights"]["dense"]) == ("hybrid", 0.03)
    assert defaults_for("someone/unknown", 768)["hybrid_weights"]["dense"] == 0.1
