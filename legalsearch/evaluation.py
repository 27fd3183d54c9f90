"""Retrieval metrics with the names and definitions of sentence-transformers' `InformationRetrievalEvaluator`
(the ones the legal model's card reports), and the runners behind `legalsearch eval`.

Two protocols:
* questions over an index (`evaluate_index`): relevance is the article of the law (`boe_id` + `article`);
* the card's own (`evaluate_pairs`): (question, context) pairs, the corpus is every pair's context, each
  question's relevant document is its own context.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .embedding import Encoder
from .errors import LegalSearchError
from .headings import parse_heading
from .matryoshka import matryoshka

ACCURACY_K = (1, 3, 5, 10)
NDCG_K = MRR_K = 10
MAP_K = 100
METRIC_NAMES = (
    [f"cosine_accuracy@{k}" for k in ACCURACY_K]
    + [f"cosine_precision@{k}" for k in ACCURACY_K]
    + [f"cosine_recall@{k}" for k in ACCURACY_K]
    + [f"cosine_ndcg@{NDCG_K}", f"cosine_mrr@{MRR_K}", f"cosine_map@{MAP_K}"]
)
DEPTH = max(*ACCURACY_K, NDCG_K, MRR_K, MAP_K)


def _dcg(relevances: Sequence[int], k: int) -> float:
    return sum(rel / math.log2(i + 2) for i, rel in enumerate(relevances[:k]))


def query_metrics(ranking: Sequence[str], relevant: set[str]) -> dict[str, float]:
    """Metrics of one ranked list of document ids (best first) against the set of relevant ids."""
    hits = [1 if doc in relevant else 0 for doc in ranking]
    metrics: dict[str, float] = {}
    for k in ACCURACY_K:
        correct = sum(hits[:k])
        metrics[f"cosine_accuracy@{k}"] = 1.0 if correct else 0.0
        metrics[f"cosine_precision@{k}"] = correct / k
        metrics[f"cosine_recall@{k}"] = correct / len(relevant)
    ideal = _dcg([1] * len(relevant), NDCG_K)
    metrics[f"cosine_ndcg@{NDCG_K}"] = _dcg(hits, NDCG_K) / ideal
    first = next((rank for rank, hit in enumerate(hits[:MRR_K], 1) if hit), None)
    metrics[f"cosine_mrr@{MRR_K}"] = 1.0 / first if first else 0.0
    correct = 0
    precisions = 0.0
    for rank, hit in enumerate(hits[:MAP_K], 1):
        if hit:
            correct += 1
            precisions += correct / rank
    metrics[f"cosine_map@{MAP_K}"] = precisions / min(MAP_K, len(relevant))
    return metrics


def mean_metrics(rankings: Sequence[Sequence[str]], relevant: Sequence[set[str]]) -> dict[str, float]:
    """Each metric averaged over the queries (the evaluator's aggregation)."""
    if not rankings:
        return {name: 0.0 for name in METRIC_NAMES}
    per_query = [query_metrics(r, rel) for r, rel in zip(rankings, relevant, strict=True)]
    return {name: float(np.mean([m[name] for m in per_query])) for name in METRIC_NAMES}


def rank_by_score(scores: np.ndarray, ids: Sequence[str], depth: int = DEPTH) -> np.ndarray:
    """Column indices of the `depth` best scores per row, best first; equal scores are ordered by ascending id
    (as strings), as the evaluator does."""
    id_order = np.argsort(np.argsort(np.asarray(ids, dtype=object), kind="stable"), kind="stable")
    ranked = np.empty((scores.shape[0], min(depth, scores.shape[1])), dtype=np.int64)
    for i, row in enumerate(scores):
        ranked[i] = np.lexsort((id_order, -row))[:depth]
    return ranked


@dataclass
class Question:
    qid: str
    text: str
    relevant: set[str]  # document ids: "<boe_id>#<article_id>" over an index, pair ids with --pairs
    source: dict = field(default_factory=dict)


@dataclass
class EvalReport:
    protocol: str  # "index" or "pairs"
    mode: str
    model: str
    dims: list[int]
    metrics: dict[int, dict[str, float]]  # dim → metric → value
    questions: int
    skipped: list[dict]  # questions whose law or article is not in the index, with the reason
    runs: dict[int, list[tuple[str, list[tuple[str, float]]]]]  # dim → [(qid, [(doc, score) …])]

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "mode": self.mode,
            "model": self.model,
            "questions": self.questions,
            "dims": self.dims,
            "metrics": {str(dim): values for dim, values in self.metrics.items()},
            "skipped": self.skipped,
        }


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LegalSearchError(f"{path}: cannot read ({exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LegalSearchError(f"{path}:{number}: not JSON ({exc.msg}); one JSON object per line") from None
        if not isinstance(row, dict):
            raise LegalSearchError(f"{path}:{number}: expected a JSON object")
        rows.append(row)
    if not rows:
        raise LegalSearchError(f"{path}: no questions")
    return rows


def article_id_of(article: str) -> str | None:
    """The unit id of an article "as written": "14" → a14, "14 bis" → a14bis, "único" → au."""
    info = parse_heading(f"Artículo {article.strip()}.")
    return info.article_id if info else None


def load_questions(path: Path) -> list[Question]:
    """Questions in the format of ../shared/eval/dev.jsonl: `question`, `boe_id`, `article` (as written) or
    `article_id`; `id` optional."""
    questions = []
    for number, row in enumerate(read_jsonl(path), 1):
        missing = [k for k in ("question", "boe_id") if not row.get(k)]
        if missing or not (row.get("article") or row.get("article_id")):
            raise LegalSearchError(
                f"{path}:{number}: needs 'question', 'boe_id' and 'article' (e.g. \"14 bis\") or 'article_id'"
            )
        article_id = row.get("article_id") or article_id_of(str(row["article"]))
        if article_id is None:
            raise LegalSearchError(f'{path}:{number}: cannot read article {row["article"]!r} (e.g. "14", "14 bis")')
        questions.append(
            Question(str(row.get("id") or number), row["question"], {f"{row['boe_id']}#{article_id}"}, row)
        )
    return questions


def evaluate_index(
    search, questions: list[Question], dims: list[int] | None = None, mode: str | None = None, **options
) -> EvalReport:
    """Article-level metrics of `search` (a `LegalSearch`) on `questions`, per dim. `options` go to
    `search_many` (`priors`, `rerank`, `rerank_depth`)."""
    from .modes import SEARCH_MODES

    mode = mode or search.default_mode
    if mode not in SEARCH_MODES:
        raise LegalSearchError(f"unknown mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
    dims = dims or search.dims
    for dim in dims:
        if dim not in search.dims:
            raise LegalSearchError(f"dim {dim} was not built for this index; built: {', '.join(map(str, search.dims))}")
    present = search.article_keys()
    scored, skipped = [], []
    for q in questions:
        (doc,) = q.relevant
        boe_id = doc.split("#", 1)[0]
        if doc in present:
            scored.append(q)
        else:
            reason = (
                "article not in the index"
                if any(k.startswith(boe_id + "#") for k in present)
                else "law not in the index"
            )
            skipped.append({"id": q.qid, "question": q.text, "relevant": doc, "reason": reason})
    metrics: dict[int, dict[str, float]] = {}
    runs: dict[int, list] = {}
    vectors = search.embed([q.text for q in scored]) if scored and mode != "lexical" else None
    for dim in dims:
        texts = [q.text for q in scored]
        results = search.search_many(texts, k=DEPTH, dim=dim, mode=mode, vectors=vectors, **options) if scored else []
        rankings = [[f"{h.boe_id}#{h.article_id}" for h in hits] for hits in results]
        metrics[dim] = mean_metrics(rankings, [q.relevant for q in scored])
        runs[dim] = [
            (q.qid, [(f"{h.boe_id}#{h.article_id}", h.score) for h in hits])
            for q, hits in zip(scored, results, strict=True)
        ]
    return EvalReport("index", mode, search.manifest["model"]["id"], dims, metrics, len(scored), skipped, runs)


def load_pairs(path: Path) -> list[tuple[str, str]]:
    """(question, context) pairs: keys `question`/`anchor`/`query` and `context`/`positive`/`answer`."""
    pairs = []
    for number, row in enumerate(read_jsonl(path), 1):
        question = row.get("question") or row.get("anchor") or row.get("query")
        context = row.get("context") or row.get("positive") or row.get("answer")
        if not question or not context:
            raise LegalSearchError(f"{path}:{number}: needs 'question' (or 'anchor') and 'context' (or 'positive')")
        pairs.append((question, context))
    return pairs


def evaluate_pairs(encoder: Encoder, pairs: list[tuple[str, str]], dims: list[int], batch_size: int = 32) -> EvalReport:
    """The card's protocol: one corpus document per pair (its context); each question's only relevant document
    is its own context. Cosine similarity of the dim's re-normalised prefixes, exhaustive."""
    questions = encoder.encode([q for q, _ in pairs], batch_size=batch_size)
    corpus = encoder.encode([c for _, c in pairs], batch_size=batch_size)
    ids = [str(i) for i in range(len(pairs))]
    metrics: dict[int, dict[str, float]] = {}
    runs: dict[int, list] = {}
    for dim in dims:
        scores = matryoshka(questions, dim) @ matryoshka(corpus, dim).T
        top = rank_by_score(scores, ids)
        rankings = [[ids[j] for j in row] for row in top]
        metrics[dim] = mean_metrics(rankings, [{i} for i in ids])
        runs[dim] = [(ids[i], [(ids[j], float(scores[i, j])) for j in row]) for i, row in enumerate(top)]
    return EvalReport("pairs", "dense", encoder.info.model_id, dims, metrics, len(pairs), [], runs)


def table_rows(report: EvalReport) -> list[list[str]]:
    """The card's layout: one row per metric, one column per dim."""
    return [[name, *(f"{report.metrics[dim][name]:.4f}" for dim in report.dims)] for name in METRIC_NAMES]


def write_report(report: EvalReport, output: Path) -> list[Path]:
    """metrics.json, metrics.csv and one TREC run file per dim (`run-dim-<d>.trec`) into `output`, each written
    whole or not at all."""
    from .store import write_atomic

    output.mkdir(parents=True, exist_ok=True)
    written = [output / "metrics.json", output / "metrics.csv"]
    write_atomic(written[0], json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["metric", *(f"dim_{d}" for d in report.dims)])
    writer.writerows(table_rows(report))
    write_atomic(written[1], table.getvalue())
    for dim in report.dims:
        path = output / f"run-dim-{dim}.trec"
        lines = [
            f"{qid} Q0 {doc} {rank} {score:.6f} legalsearch-{report.mode}-{dim}\n"
            for qid, ranked in report.runs[dim]
            for rank, (doc, score) in enumerate(ranked, 1)
        ]
        write_atomic(path, "".join(lines))
        written.append(path)
    return written


FUSION_GRID = (2.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.02)  # dense weights against lexical 1.0 that `calibrate` measures


def calibrate(search, questions: list[Question]) -> dict:
    """Measure dense, lexical and hybrid at every dense weight of `FUSION_GRID` on `questions` (MRR@10 at the
    index's default dim) and choose the best; on a tie, hybrid before a single mode and the weight nearest 1.
    Returns {"mode", "hybrid_weights", "table", "questions", "metric"} for the manifest's defaults."""
    dim = search.default_dim
    defaults = search.manifest.setdefault("defaults", {})
    saved = defaults.get("hybrid_weights")
    rows = []
    try:
        for mode in ("dense", "lexical"):
            metrics = evaluate_index(search, questions, [dim], mode).metrics[dim]
            rows.append({"mode": mode, "dense_weight": None, **_summary(metrics)})
        for weight in FUSION_GRID:
            defaults["hybrid_weights"] = {"dense": weight, "lexical": 1.0}
            metrics = evaluate_index(search, questions, [dim], "hybrid").metrics[dim]
            rows.append({"mode": "hybrid", "dense_weight": weight, **_summary(metrics)})
    finally:
        defaults["hybrid_weights"] = saved or {"dense": 1.0, "lexical": 1.0}
    best = max(
        rows,
        key=lambda r: (round(r["mrr@10"], 4), r["mode"] == "hybrid", -abs(math.log(r["dense_weight"] or 1e-9))),
    )
    weight = best["dense_weight"] if best["mode"] == "hybrid" else (defaults["hybrid_weights"] or {}).get("dense", 1.0)
    return {
        "mode": best["mode"],
        "hybrid_weights": {"dense": weight, "lexical": 1.0},
        "table": rows,
        "questions": len(questions),
        "metric": "cosine_mrr@10",
    }


def _summary(metrics: dict[str, float]) -> dict[str, float]:
    return {
        "acc@1": round(metrics["cosine_accuracy@1"], 4),
        "acc@10": round(metrics["cosine_accuracy@10"], 4),
        "mrr@10": round(metrics["cosine_mrr@10"], 4),
        "ndcg@10": round(metrics["cosine_ndcg@10"], 4),
    }


PRIOR_NAMES = ("operative", "repealed", "rango", "law_boost", "diversity")


def ablation(search, questions: list[Question], mode: str | None = None, rerank: str | None = None) -> list[dict]:
    """Each component's contribution (`eval --ablate`): the default ranking, then each legal prior turned off, no
    priors, the lexicon off, and (with `rerank`) the reranker on — acc@1, acc@10, MRR@10, NDCG@10 at the
    default dim, with the MRR change against the first row."""
    from .indexing import LEXICON_WEIGHT
    from .ranking import Priors

    dim = search.default_dim
    defaults = search.manifest.setdefault("defaults", {})
    priors = search.priors
    lexicon = search.lexicon_weight or LEXICON_WEIGHT  # an index older than the lexicon: today's default
    variants = [("default", priors, lexicon, None)]
    variants += [(f"no {name}", priors.without(name), lexicon, None) for name in PRIOR_NAMES]
    variants += [("no priors", Priors.none(priors.k), lexicon, None), ("no lexicon", priors, 0.0, None)]
    variants += [("neither", Priors.none(priors.k), 0.0, None)]
    if rerank:
        variants.append((f"+ rerank {Path(rerank).name}", priors, lexicon, rerank))
    saved = defaults.get("lexicon_weight")
    rows = []
    try:
        for name, variant, weight, reranker in variants:
            defaults["lexicon_weight"] = weight
            metrics = evaluate_index(search, questions, [dim], mode, priors=variant, rerank=reranker).metrics[dim]
            rows.append({"variant": name, **_summary(metrics)})
    finally:
        defaults["lexicon_weight"] = saved
    for row in rows:
        row["delta_mrr"] = round(row["mrr@10"] - rows[0]["mrr@10"], 4)
    return rows
