"""The two engines side by side: the laws of ../shared/corpora with all-MiniLM-L6-v2, in the local engine
(segments + SQLite) and in Qdrant's local mode (qdrant-client, no server), in one run.

It reports index time (the local build with its embedding; then writing the same contents, vectors given, into
each engine: a local rewrite against Qdrant's `write_all`), p50/p95 search latency per mode through
`LegalSearch` (query vectors computed once, so the store's work is what differs), and the dev-set metrics of
../shared/eval for both (they should be equal). Ratios are Qdrant / local.

    python bench/engines.py [--workdir DIR] [--queries 60] [--k 10]     (a workdir's local index is reused)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import CORPORA, DEV, Timer, default_model

from legalsearch import indexing, store
from legalsearch.engines import StoreSpec, qdrant

MODES = ("dense", "funnel", "lexical", "hybrid")


def build(workdir: Path, model: str) -> tuple[Path, StoreSpec, dict]:
    """The local index (built), a local rewrite and the Qdrant store of the same contents; their times."""
    local = workdir / "local"
    spec = StoreSpec.parse(f"qdrant:{workdir / 'qdrant'}/corpus")
    times = {"build": float("nan")}
    shutil.rmtree(workdir / "qdrant", ignore_errors=True)
    if not (local / store.MANIFEST).exists():  # a workdir of an earlier run keeps its embedded local index
        with Timer() as t:
            report = indexing.build([str(CORPORA)], local, model=model, device="cpu")
        times["build"] = t.seconds
        print(f"local build (parse, chunk, embed, write): {t.seconds:.1f} s, {report.laws} laws", flush=True)
    contents = store.load_contents(local)
    rewrite = workdir / "local-rewrite"
    shutil.rmtree(rewrite, ignore_errors=True)
    with Timer() as t, store.WriterLock(rewrite):
        store.write_index(rewrite, contents)
    times["local_write"] = t.seconds
    with Timer() as t, qdrant.open_writer(spec) as writer:
        writer.write_all(contents, "build")
    times["qdrant_write"] = t.seconds
    times["chunks"] = sum(len(s.chunks) for s in contents.laws)
    return local, spec, times


def latencies(search, questions: list[str], vectors: np.ndarray, mode: str, k: int) -> np.ndarray:
    search.search_many(questions[:2], k=k, mode=mode, vectors=vectors[:2])  # warm
    seconds = []
    for i, question in enumerate(questions):
        started = time.perf_counter()
        search.search_many([question], k=k, mode=mode, vectors=vectors[i : i + 1])
        seconds.append(time.perf_counter() - started)
    return np.array(seconds) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    if not DEV.exists() or not CORPORA.exists():
        print(f"skipped: needs {CORPORA} and {DEV}")
        return 0
    from legalsearch.embedding import load_encoder
    from legalsearch.evaluation import evaluate_index, load_questions
    from legalsearch.search import LegalSearch

    model = args.model or default_model()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-engines-"))
    local, spec, times = build(workdir, model)
    encoder = load_encoder(model, device="cpu")
    searches = {
        "local": LegalSearch.open(local, encoder=encoder),
        "qdrant": LegalSearch.open(spec.label, encoder=encoder),
    }
    questions = load_questions(DEV)
    texts = [q.text for q in questions][: args.queries]
    vectors = searches["local"].embed(texts)
    print(f"\n{times['chunks']} chunks; {len(texts)} dev questions; k={args.k}\n")
    print(f"{'':28} {'local':>10} {'qdrant':>10} {'ratio':>7}")
    print(f"{'write the index (s)':28} {times['local_write']:10.2f} {times['qdrant_write']:10.2f} "
          f"{times['qdrant_write'] / times['local_write']:6.1f}x")  # fmt: skip
    metrics = {}
    for mode in MODES:
        found = {engine: latencies(s, texts, vectors, mode, args.k) for engine, s in searches.items()}
        for stat, q in (("p50", 50), ("p95", 95)):
            a, b = (float(np.percentile(found[e], q)) for e in ("local", "qdrant"))
            print(f"{mode + ' ' + stat + ' (ms)':28} {a:10.1f} {b:10.1f} {b / a:6.1f}x", flush=True)
        for engine, s in searches.items():
            report = evaluate_index(s, questions, dims=[max(s.dims)], mode=mode)
            metrics[(mode, engine)] = report.metrics[max(s.dims)]
    names = list(next(iter(metrics.values())))[:4]
    print(f"\n{'dev metrics':16} " + " ".join(f"{n:>12}" for n in names) + "  same")
    for mode in MODES:
        a, b = metrics[(mode, "local")], metrics[(mode, "qdrant")]
        for engine, m in (("local", a), ("qdrant", b)):
            same = "" if engine == "local" else ("yes" if all(abs(a[n] - b[n]) < 1e-9 for n in a) else "NO")
            print(f"{mode + ' ' + engine:16} " + " ".join(f"{m[n]:12.4f}" for n in names) + f"  {same}")
    print(f"\nlocal build with embedding: {times['build']:.1f} s (the model's work is the same for both engines)")
    print(f"workdir {workdir} (give it again with --workdir to reuse the embedded local index)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
