"""Passages per second of a model of the legal model's architecture and size on a CUDA GPU: torch fp32 against
fp16 and bf16, at several batch sizes, in one process (ratios against fp32 at the same batch size).

The model is XLM-RoBERTa large with random weights (568M parameters, CLS pooling, Normalize), built on the spot:
speed does not depend on the weights. Needs only torch, sentence-transformers and this package (no corpus).

    python bench/gpu.py [--passages 2048] [--tokens 256] [--batches 32,128]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from legalsearch.embedding import load_encoder
from legalsearch.testing import build_random_xlmr

SENTENCES = """la administración notificará sus resoluciones a los interesados en el plazo de diez días
el trabajador tendrá derecho a vacaciones anuales retribuidas de treinta días naturales
el contrato de arrendamiento de vivienda exige fianza en metálico
los españoles son mayores de edad a los dieciocho años
disposición adicional primera del reglamento de la ley orgánica"""
WORDS = SENTENCES.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batches", default="32,128")
    parser.add_argument("--precisions", default="fp32,fp16,bf16")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("skipped: no CUDA device")
    rng = random.Random(0)
    text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(30)) for _ in range(200))
    passages = [" ".join(rng.choice(WORDS) for _ in range(args.tokens * 2)) for _ in range(args.passages)]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        model = build_random_xlmr(Path(folder), text, "large", max_seq_length=args.tokens)
        print(f"built the model in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for precision in args.precisions.split(","):
            encoder = load_encoder(str(model), "cuda", backend="torch", precision=precision)
            for batch in map(int, args.batches.split(",")):
                encoder.encode(passages[: batch * 2], batch_size=batch)  # warm-up: kernels, allocator
                torch.cuda.synchronize()
                started = time.perf_counter()
                encoder.encode(passages, batch_size=batch)
                torch.cuda.synchronize()
                seconds = time.perf_counter() - started
                rows.append({"precision": precision, "batch": batch, "passages_per_s": args.passages / seconds})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            del encoder
            torch.cuda.empty_cache()
    base = {r["batch"]: r["passages_per_s"] for r in rows if r["precision"] == "fp32"}
    device = torch.cuda.get_device_name()
    print(f"{device} · torch {torch.__version__} · {args.passages} passages × {args.tokens} tokens")
    for row in rows:
        ratio = row["passages_per_s"] / base[row["batch"]] if row["batch"] in base else float("nan")
        tokens = row["passages_per_s"] * args.tokens
        print(f"{row['precision']:5} batch {row['batch']:4}  {row['passages_per_s']:9.1f} passages/s  "
              f"{tokens:10.0f} tokens/s  {ratio:5.2f}× fp32")  # fmt: skip


if __name__ == "__main__":
    main()
