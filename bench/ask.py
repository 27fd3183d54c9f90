"""`legalsearch ask` wall time, each call a fresh process as a user runs it, with the query-encoder daemon
(`legalsearch/encoder_daemon.py`) on and off: the first call after indexing (no compiled model cached, no daemon
running), later calls, and `--mode lexical` (no model at all), with the query's own encoding measured
in-process. Later and lexical calls alternate, and each is the median of --repeat runs (other work on the
machine moves single runs by seconds). Target (issue 25): a later ask ≤ 1.5 × lexical + the query's encoding.

    python bench/ask.py                      # all-MiniLM-L6-v2 (the offline model of the tests)
    python bench/ask.py --model large        # a random model of the legal model's size (XLM-R large)
    python bench/ask.py --model minilm large # both, one after the other
    python bench/ask.py --model DIR          # any sentence-transformers folder
    python bench/ask.py --keep /tmp/ask      # build the model and its index once, in /tmp/ask/NAME, reuse them
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, default_model

sys.path.insert(0, str(ROOT))

SOURCE = ROOT / "corpora" / "sample" / "laws" / "xml" / "BOE-A-1989-22056.xml"  # 16 units: small to embed
QUESTION = "¿Necesito permiso para soltar ejemplares de especies de caza?"


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
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
    """The median time of one query's encoding with the encoder `ask` loads in-process, and its kind."""
    from legalsearch import LegalSearch

    search = LegalSearch.open(index)
    search.embed([QUESTION])  # loaded and warmed
    times = []
    for _ in range(5):
        start = time.perf_counter()
        search.embed([QUESTION])
        times.append(time.perf_counter() - start)
    return statistics.median(times), type(search.encoder).__name__


def forget_compiled(work: Path, model: str) -> None:
    """The first ask compiles the model: no compiled model kept."""
    for cache in {*work.rglob("openvino/cache"), *Path(model).glob("openvino/cache")}:
        shutil.rmtree(cache, ignore_errors=True)


def calls(ask: list[str], env: dict, repeat: int) -> tuple[float, float, float]:
    """First ask, then the medians of later asks and lexical ones, run alternately."""
    first = timed(ask, env)
    later, lexical = [], []
    for _ in range(repeat):
        later.append(timed(ask, env))
        lexical.append(timed([*ask, "--mode", "lexical"], env))
    return first, statistics.median(later), statistics.median(lexical)


def bench(name: str, repeat: int, keep: Path | None) -> None:
    from legalsearch.encoder_daemon import stop_daemons

    work = keep / Path(name).name if keep else Path(tempfile.mkdtemp(prefix="bench-ask-"))
    runtime = Path(tempfile.mkdtemp(prefix="bench-ask-run-"))  # a daemon of the bench's own, stopped at its end
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "LEGALSEARCH_MODELS": str(work / "exports")}
        env["XDG_RUNTIME_DIR"] = str(runtime)
        index = work / "idx"
        cli = [sys.executable, "-m", "legalsearch"]
        if (index / "manifest.json").exists():
            model, built = json.loads((index / "manifest.json").read_text(encoding="utf-8"))["model"]["id"], "kept"
        else:
            model = model_folder(name, work)
            seconds = timed([*cli, "index", str(SOURCE), "--index", str(index), "--model", model], env)
            built = f"built in {seconds:.1f} s"
        ask = [*cli, "ask", QUESTION, "--index", str(index), "-k", "5"]
        os.environ.update({"HF_HUB_OFFLINE": "1", "LEGALSEARCH_MODELS": env["LEGALSEARCH_MODELS"]})
        encoding, kind = encoding_seconds(index)
        print(f"model {name} ({model}); index of {SOURCE.name} {built}; {repeat} runs each")
        print(f"query encoding in-process ({kind}): {encoding * 1000:.0f} ms")
        for daemon in ("0", "1"):
            forget_compiled(work, model)
            first, later, lexical = calls(ask, {**env, "LEGALSEARCH_ENCODER_DAEMON": daemon}, repeat)
            stop_daemons(runtime / "legalsearch")
            target = 1.5 * lexical + encoding
            print(
                f"  daemon {'on ' if daemon == '1' else 'off'}: first ask {first:5.2f} s, later {later:5.2f} s, "
                f"lexical {lexical:5.2f} s; target {target:5.2f} s; later / target = {later / target:.2f} "
                f"(<= 1.00); later / lexical = {later / lexical:.2f}"
            )
    finally:
        stop_daemons(runtime / "legalsearch")
        shutil.rmtree(runtime, ignore_errors=True)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="+", default=["minilm"], help="minilm, large, or a model folder")
    parser.add_argument("--repeat", type=int, default=5, help="runs of the later and the lexical calls")
    parser.add_argument("--keep", type=Path, help="build each model's index in KEEP/NAME once, reuse it later")
    args = parser.parse_args()
    for name in args.model:
        bench(name, args.repeat, args.keep)


if __name__ == "__main__":
    main()
