"""The funnel on a Matryoshka-trained model, which the models that run here are not.

all-MiniLM-L6-v2 is fine-tuned here with MatryoshkaLoss(MultipleNegativesRankingLoss) at 384/256/128/64 on
(heading → article text) pairs of an index's units — the units that answer ../shared/eval/dev.jsonl are left
out of training — then its vectors of --chunks chunks are replicated to --n with noise, and the funnel is timed
against exact full-dim search in the same run, as in bench/dense.py. This checks the mechanism; the legal model
(1024 dims, trained with MatryoshkaLoss) is the one it is meant for.

    python bench/matryoshka_funnel.py --index DIR [--steps 150] [--chunks 8000] [--n 200000]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import DEV, default_model, dev_questions
from dense import best_time, recall_at_10, replicate, rescore

from legalsearch.embedding import load_encoder, matryoshka
from legalsearch.evaluation import article_id_of
from legalsearch.store import build_faiss


def train(index: Path, steps: int, batch: int, out: Path) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

    held_out = set()
    if DEV.exists():
        for line in DEV.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            held_out.add((row["boe_id"], article_id_of(row["article"])))
    db = sqlite3.connect(index / "legalsearch.sqlite")
    pairs = [
        (heading, text[:1500])
        for boe_id, article_id, heading, text in db.execute("SELECT boe_id, article_id, heading, text FROM articles")
        if (boe_id, article_id) not in held_out and len(heading.split(".", 1)[-1].strip()) > 8 and text
    ]
    random.Random(0).shuffle(pairs)
    model = SentenceTransformer(default_model(), device="cpu")
    model.max_seq_length = 128
    loss = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), matryoshka_dims=[384, 256, 128, 64])
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        chunk = pairs[(step * batch) % len(pairs) :][:batch]
        features = [model.tokenize([a for a, _ in chunk]), model.tokenize([p for _, p in chunk])]
        value = loss(features, None)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 25 == 0:
            print(f"step {step} loss {value.item():.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    model.eval()
    model.save(str(out))
    print(f"trained on {min(len(pairs), steps * batch)} of {len(pairs)} pairs in {time.perf_counter() - started:.0f} s")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=8000)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    model_dir = train(args.index, args.steps, args.batch, Path(tempfile.mkdtemp()) / "minilm-matryoshka")
    encoder = load_encoder(str(model_dir), device="cpu")
    db = sqlite3.connect(args.index / "legalsearch.sqlite")
    texts = [row[0] for row in db.execute("SELECT text FROM chunks ORDER BY row")]
    texts = random.Random(1).sample(texts, min(args.chunks, len(texts)))
    started = time.perf_counter()
    base = encoder.encode(texts, batch_size=32)
    print(f"encoded {len(texts)} chunks in {time.perf_counter() - started:.0f} s")
    vectors, queries = replicate(base, args.n, args.noise)
    queries = [queries]
    if DEV.exists():
        questions = dev_questions()
        queries.insert(0, encoder.encode(questions))
    queries = np.concatenate(queries)
    full = base.shape[1]
    exact_index = build_faiss(vectors, full, "flat")
    exact_s, (_, truth) = best_time(args.repeat, lambda: exact_index.search(queries, 10))
    print(f"{len(texts)} chunk vectors of MiniLM fine-tuned with MatryoshkaLoss, replicated to {args.n} "
          f"(noise {args.noise}); {len(queries)} queries")  # fmt: skip
    print(f"{'method':36} {'ms/query':>9} {'vs exact':>9} {'recall@10':>10}")
    print(f"{'exact float, full dim':36} {exact_s / len(queries) * 1000:9.3f} {1:8.2f}x {1:10.4f}")
    for small in (64, 128):
        small_index = build_faiss(vectors, small, "flat")
        small_q = matryoshka(queries, small)
        for shortlist in (200, 1000):

            def funnel(idx=small_index, q=small_q, s=shortlist):
                return rescore(idx.search(q, s)[1], vectors, queries, full)

            seconds, found = best_time(args.repeat, funnel)
            name = f"funnel {small}→{full}, shortlist {shortlist}"
            recall = recall_at_10(found, truth)
            print(f"{name:36} {seconds / len(queries) * 1000:9.3f} {seconds / exact_s:8.2f}x {recall:10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
