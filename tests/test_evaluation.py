"""IR metrics on hand-computed cases, agreement with sentence-transformers' evaluator, and `legalsearch eval`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from legalsearch.cli import app
from legalsearch.embedding import load_encoder
from legalsearch.evaluation import METRIC_NAMES, evaluate_pairs, load_questions, query_metrics, rank_by_score

from .test_index_search import LAW_A, LAW_B

runner = CliRunner()


def test_one_relevant_document_found_first() -> None:
    m = query_metrics(["r", "x", "y"], {"r"})
    assert m["cosine_accuracy@1"] == m["cosine_precision@1"] == m["cosine_recall@1"] == 1
    assert m["cosine_precision@3"] == pytest.approx(1 / 3) and m["cosine_precision@10"] == pytest.approx(0.1)
    assert m["cosine_ndcg@10"] == m["cosine_mrr@10"] == m["cosine_map@100"] == 1


def test_no_relevant_document_in_the_list() -> None:
    m = query_metrics(["x", "y", "z"], {"r"})
    assert all(m[name] == 0 for name in METRIC_NAMES)


def test_several_relevant_documents() -> None:
    m = query_metrics(["x", "a", "y", "b", "z"], {"a", "b"})
    assert (m["cosine_accuracy@1"], m["cosine_accuracy@3"]) == (0, 1)
    assert m["cosine_precision@3"] == pytest.approx(1 / 3) and m["cosine_precision@5"] == pytest.approx(2 / 5)
    assert m["cosine_recall@3"] == pytest.approx(1 / 2) and m["cosine_recall@5"] == 1
    assert m["cosine_mrr@10"] == pytest.approx(1 / 2)
    ideal = 1 + 1 / math.log2(3)
    assert m["cosine_ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert m["cosine_map@100"] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_k_larger_than_the_result_list() -> None:
    m = query_metrics(["a"], {"a"})  # one result, k up to 100
    assert m["cosine_precision@10"] == pytest.approx(0.1), "precision@k divides by k, not by the list's length"
    assert m["cosine_recall@10"] == 1 and m["cosine_accuracy@10"] == 1 and m["cosine_map@100"] == 1


def test_ties_are_ordered_by_ascending_id() -> None:
    scores = np.array([[0.5, 0.9, 0.9, 0.9]])
    ids = ["0", "2", "10", "1"]
    assert rank_by_score(scores, ids).tolist() == [[3, 2, 1, 0]]  # "1" < "10" < "2", as strings
    m = query_metrics([ids[i] for i in rank_by_score(scores, ids)[0]], {"2"})
    assert m["cosine_mrr@10"] == pytest.approx(1 / 3)


def _pairs() -> list[tuple[str, str]]:
    articles = {
        "¿A qué edad se es mayor de edad?": "Los españoles son mayores de edad a los dieciocho años.",
        "¿Cómo es la bandera de España?": "La bandera de España está formada por tres franjas horizontales.",
        "¿Cuál es la capital?": "La capital del Estado es la villa de Madrid.",
        "¿Se permite la pena de muerte?": "Queda abolida la pena de muerte, salvo en tiempos de guerra.",
        "vacaciones del trabajador": "El periodo de vacaciones anuales retribuidas será de treinta días naturales.",
        "duración del periodo de prueba": "Podrá concertarse por escrito un periodo de prueba de seis meses.",
        "salario mínimo": "El Gobierno fijará anualmente el salario mínimo interprofesional.",
        "fianza del arrendamiento": "Será obligatoria la prestación de fianza en metálico de una mensualidad.",
        "plazo para notificar": "Toda notificación deberá ser cursada dentro del plazo de diez días.",
        "lenguas oficiales": "El castellano es la lengua española oficial del Estado.",
        "derecho de asilo": "La ley establecerá los términos del derecho de asilo en España.",
        "libertad religiosa": "Se garantiza la libertad ideológica, religiosa y de culto.",
    }
    return list(articles.items())


def test_pairs_protocol_equals_sentence_transformers_evaluator(minilm: Path) -> None:
    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    except ImportError:
        from sentence_transformers.evaluation import InformationRetrievalEvaluator

    pairs = _pairs()
    encoder = load_encoder(str(minilm), device="cpu")
    report = evaluate_pairs(encoder, pairs, [384, 128, 64])
    ids = [str(i) for i in range(len(pairs))]
    for dim in (384, 128, 64):
        evaluator = InformationRetrievalEvaluator(
            queries=dict(zip(ids, [q for q, _ in pairs], strict=True)),
            corpus=dict(zip(ids, [c for _, c in pairs], strict=True)),
            relevant_docs={i: {i} for i in ids},
            truncate_dim=dim,
            write_csv=False,
        )
        theirs = evaluator(encoder.model)
        for name in METRIC_NAMES:
            key = next(k for k in theirs if k.endswith(name))
            assert report.metrics[dim][name] == pytest.approx(theirs[key], abs=1e-6), (dim, name)
    assert report.metrics[384]["cosine_accuracy@10"] == 1.0


def test_cli_eval_over_an_index_writes_json_csv_and_trec(tmp_path: Path, tiny_model: Path) -> None:
    laws = tmp_path / "laws"
    laws.mkdir()
    (laws / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    (laws / "BOE-A-2099-2.txt").write_text(LAW_B, encoding="utf-8")
    assert runner.invoke(app, ["index", str(laws), "--model", str(tiny_model)]).exit_code == 0
    questions = tmp_path / "q.jsonl"
    rows = [
        {"id": "q1", "question": "vacaciones anuales", "boe_id": "BOE-A-2099-1", "article": "1"},
        {"id": "q2", "question": "fianza en metálico", "boe_id": "BOE-A-2099-2", "article": "2"},
        {"id": "q3", "question": "otra ley", "boe_id": "BOE-A-1978-31229", "article": "14"},
        {"id": "q4", "question": "artículo que no existe", "boe_id": "BOE-A-2099-1", "article": "9 bis"},
    ]
    questions.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    result = runner.invoke(app, ["eval", str(questions), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for name in METRIC_NAMES:
        assert name in result.stdout
    assert "not scored: q3 BOE-A-1978-31229#a14: law not in the index" in result.stderr
    assert "not scored: q4 BOE-A-2099-1#a9bis: article not in the index" in result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["questions"] == 2 and metrics["dims"] == [128, 64] and len(metrics["skipped"]) == 2
    csv_rows = (tmp_path / "out" / "metrics.csv").read_text().splitlines()
    assert csv_rows[0] == "metric,dim_128,dim_64" and len(csv_rows) == 1 + len(METRIC_NAMES)
    run = (tmp_path / "out" / "run-dim-64.trec").read_text().splitlines()
    qid, q0, doc, rank, _score, tag = run[0].split()
    assert (qid, q0, rank, tag) == ("q1", "Q0", "1", "legalsearch-hybrid-64") and doc.startswith("BOE-A-2099-")
    assert {line.split()[0] for line in run} == {"q1", "q2"}
    # every article of this tiny index is ranked: recall@10 is 1 whatever the model
    assert metrics["metrics"]["128"]["cosine_recall@10"] == 1.0


def test_questions_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x", "boe_id": "BOE-A-1-1"}\n', encoding="utf-8")
    with pytest.raises(Exception, match="needs 'question', 'boe_id' and 'article'"):
        load_questions(bad)
    bad.write_text("not json\n", encoding="utf-8")
    result = runner.invoke(app, ["eval", str(bad), "--index", str(tmp_path)])
    assert result.exit_code == 1
    result = runner.invoke(app, ["eval"])
    assert result.exit_code == 2 and "give a QUESTIONS.jsonl file, or --pairs" in result.stderr


def test_dev_questions_parse(tmp_path: Path) -> None:
    from .conftest import EVAL

    questions = load_questions(EVAL / "dev.jsonl")  # the sample's 17 of the 60 development questions
    assert len(questions) == 17 and all(len(q.relevant) == 1 for q in questions)
    assert {"BOE-A-1995-24292#a29", "BOE-A-2015-11430#a31"} <= {next(iter(q.relevant)) for q in questions}
