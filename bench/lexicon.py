"""The lexicon's query expansion on the dev questions: lexical and hybrid MRR@10 / acc@1 / acc@10 per
`lexicon_weight`, on an index you built (e.g. all of ../shared/corpora with all-MiniLM-L6-v2):

    legalsearch index ../shared/corpora --index /tmp/minilm --model <MiniLM folder>
    python bench/lexicon.py --index /tmp/minilm --weights 0 0.2 0.3 0.5

The weight multiplies the BM25 score of the lexicon's legal terms, added to the query's own words' score.
Weight 0 is the baseline, measured in the same run. Which model built the index is printed with the table.
"""

from __future__ import annotations

import argparse

from common import open_with_dev

from legalsearch.evaluation import evaluate_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.2, 0.3, 0.5])
    parser.add_argument("--modes", nargs="+", default=["lexical", "hybrid"])
    args = parser.parse_args()
    search, questions, dim = open_with_dev(args.index)
    print(f"model {search.manifest['model']['id']} · dim {dim} · {len(questions)} questions")
    print(f"{'mode':8} {'weight':>6} {'acc@1':>7} {'acc@10':>7} {'MRR@10':>7} {'Δ MRR':>7}")
    for mode in args.modes:
        base = None
        for weight in args.weights:
            search.manifest.setdefault("defaults", {})["lexicon_weight"] = weight
            metrics = evaluate_index(search, questions, [dim], mode).metrics[dim]
            mrr = metrics["cosine_mrr@10"]
            base = mrr if base is None else base
            print(f"{mode:8} {weight:6.2f} {metrics['cosine_accuracy@1']:7.3f} {metrics['cosine_accuracy@10']:7.3f} "
                  f"{mrr:7.3f} {mrr - base:+7.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
