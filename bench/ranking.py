"""The ranking's components, one at a time, on the dev questions (an ablation table): for each mode, all the
legal priors, each prior turned off, no priors, and the lexicon off — acc@1, acc@10, MRR@10, NDCG@10.

    python bench/ranking.py --index DIR [--modes lexical hybrid dense]

Built on any index; the model that built it is printed with the table (e.g. all of ../shared/corpora with
all-MiniLM-L6-v2). Rows are measured in the same run against the first row of their mode.
"""

from __future__ import annotations

import argparse

from common import open_with_dev

from legalsearch.evaluation import ablation
from legalsearch.search import LegalSearch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True)
    parser.add_argument("--modes", nargs="+", default=["lexical", "hybrid", "dense"])
    parser.add_argument("--latency", action="store_true", help="also: ms per query with and without the priors")
    args = parser.parse_args()
    search, questions, dim = open_with_dev(args.index)
    print(f"model {search.manifest['model']['id']} · dim {dim} · {len(questions)} questions · {search.priors}")
    print(f"{'mode':8} {'variant':14} {'acc@1':>6} {'acc@10':>6} {'MRR@10':>6} {'NDCG@10':>7} {'Δ MRR':>6}")
    for mode in args.modes:
        for row in ablation(search, questions, mode):
            print(f"{mode:8} {row['variant']:14} {row['acc@1']:6.3f} {row['acc@10']:6.3f} {row['mrr@10']:6.3f} "
                  f"{row['ndcg@10']:7.3f} {row['delta_mrr']:+6.3f}")  # fmt: skip

    if args.latency:
        print(latency(search, [q.text for q in questions], args.modes))


def latency(search: LegalSearch, texts: list[str], modes: list[str], repeat: int = 3) -> str:
    """ms per query, one at a time (k=5, query vectors embedded beforehand), without and with the priors, in
    this process: the ratio is what the priors cost."""
    import time

    from legalsearch.ranking import Priors

    vectors = search.embed(texts)
    lines = [f"{'mode':8} {'no priors ms':>12} {'priors ms':>10} {'ratio':>6}"]
    for mode in modes:
        timing = {}
        for name, priors in (("off", Priors.none()), ("on", search.priors)):
            best = float("inf")
            for _ in range(repeat):
                started = time.perf_counter()
                for i, text in enumerate(texts):
                    search.search_many([text], k=5, mode=mode, vectors=vectors[i : i + 1], priors=priors)
                best = min(best, (time.perf_counter() - started) / len(texts))
            timing[name] = best * 1000
        lines.append(f"{mode:8} {timing['off']:12.2f} {timing['on']:10.2f} {timing['on'] / timing['off']:6.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
