"""`legalsearch ask` wall time, each call a fresh process as a user runs it: the first call after indexing (no
compiled model cached), the second, and `--mode lexical` (no model at all), with the query's own encoding
measured in-process. Later calls and lexical ones are the median of --repeat runs (other work on the machine
moves single runs by seconds). Target: second ask ≤ 1.5 × lexical + the query's encoding.

    python bench/ask.py                      # all-MiniLM-L6-v2 (the offline model of the tests)
    python bench/ask.py --model large        # a random model of the legal model's size (XLM-R large)
    python bench/ask.py --model DIR          # any sentence-transformers folder
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, default_model

SOURCE = ROOT / "corpora" / "sample" / "laws" / "xml" / "BOE-A-1989-22056.xml"  # 16 units: small to embed
QUESTION = "¿Necesito permiso para soltar ejemplares de especies de caza?"


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


def model_folder(name: str, work: Path) -> str:
    if name == "minilm":
        return default_model()
    if name == "large":
        from legalsearch.testing import build_random_xlmr

        text = SOURCE.read_text(encoding="utf-8")
        return str(build_random_xlmr(work / "model", text, "large"))
    return name


def encoding_seconds(index: Path) -> tuple[float, str]:
    """The median time of one query's encoding with the encoder `ask` loads, and its kind."""
    from legalsearch import LegalSearch

    search = LegalSearch.open(index)
    search.embed([QUESTION])  # loaded and warmed
    times = []
    for _ in range(5):
        start = time.perf_counter()
        search.embed([QUESTION])
        times.append(time.perf_counter() - start)
    return statistics.median(times), type(search.encoder).__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="minilm", help="minilm, large, or a model folder")
    parser.add_argument("--repeat", type=int, default=5, help="runs of the later and the lexical calls")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ask-"))
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "LEGALSEARCH_MODELS": str(work / "exports")}
        model = model_folder(args.model, work)
        index = work / "idx"
        cli = [sys.executable, "-m", "legalsearch"]
        built = timed([*cli, "index", str(SOURCE), "--index", str(index), "--model", model], env)
        for cache in {*work.rglob("openvino/cache"), *Path(model).glob("openvino/cache")}:
            shutil.rmtree(cache, ignore_errors=True)  # the first ask compiles the model: no compiled model kept
        ask = [*cli, "ask", QUESTION, "--index", str(index), "-k", "5"]
        first = timed(ask, env)
        second = statistics.median(timed(ask, env) for _ in range(args.repeat))
        lexical = statistics.median(timed([*ask, "--mode", "lexical"], env) for _ in range(args.repeat))
        encoding, kind = encoding_seconds(index)
        target = 1.5 * lexical + encoding
        print(f"model {args.model} ({model}); index of {SOURCE.name} built in {built:.1f} s")
        print(f"ask, first call:  {first:6.2f} s  ({first / lexical:.2f}x lexical)")
        print(f"ask, later calls: {second:6.2f} s  ({second / lexical:.2f}x lexical; median of {args.repeat})")
        print(f"ask --mode lexical: {lexical:6.2f} s  (median of {args.repeat})")
        print(f"query encoding ({kind}): {encoding * 1000:.0f} ms")
        print(f"later / (1.5 x lexical + encoding) = {second / target:.2f}  (target <= 1.00)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
