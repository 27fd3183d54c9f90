"""All of Spanish law on one machine: a synthetic index of half a million chunks at 1024 dims.

Texts are real: chunk texts of the laws of ../shared/corpora (parsed and cut here), sampled with replacement.
Vectors are synthetic with Matryoshka-like structure: each law has a centre, each chunk is its law's centre plus
noise, and the variance of component i falls as 1/sqrt(1 + i/32), so short prefixes carry most of a vector's
direction (as in a model trained with MatryoshkaLoss). Queries are chunk vectors plus noise; lexical queries are
the dev questions of ../shared/eval (or chunk snippets). No model is loaded: "excluding query encoding" and
"excluding embedding" are literal (a stand-in encoder returns synthetic vectors to the update pipeline).

It reports: build time (the whole index written at once: what every update cost before segments); bytes per
component and per chunk; open time and RSS of a fresh process after its first funnel search; p50/p95 latency
per mode (2 threads) on the one-segment index and after the updates (several segments), as a ratio; the cost of
adding, changing and removing 20 laws (wall, bytes written, peak RSS: each its own process), against the full
rewrite; and the time of a merge of all segments.

    python bench/scale.py [--chunks 500000] [--dim 1024] [--per-law 40] [--workdir DIR] [--queries 50]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import CORPORA, dev_questions, peak_rss_mb

from legalsearch import indexing, store
from legalsearch.documents import Article, Chunk, Law
from legalsearch.embedding import EncoderInfo
from legalsearch.segments import FOLDER

MODES = ("funnel", "lexical", "hybrid", "dense")


class SyntheticEncoder:
    """Stands in for the model in the update pipeline: whitespace tokens, vectors drawn like the index's."""

    def __init__(self, dim: int, seed: int = 1) -> None:
        self.dim = dim
        self.info = EncoderInfo("synthetic-matryoshka", "synthetic", dim, 8192, "cpu", "fp32")
        self.rng = np.random.default_rng(seed)

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]

    def encode(self, texts, batch_size: int = 16, progress=None):
        vectors = synthetic_vectors(self.rng, len(texts), self.dim, max(1, len(texts) // 40))
        if progress:
            progress(len(texts))
        return vectors.astype(np.float32)


def synthetic_vectors(rng, n: int, dim: int, laws: int) -> np.ndarray:
    """`n` unit vectors (float16) in `laws` clusters, component variance falling with the index."""
    scale = (1.0 / np.sqrt(1.0 + np.arange(dim) / 32.0)).astype(np.float32)
    centres = rng.standard_normal((max(laws, 1), dim), dtype=np.float32) * scale
    out = np.empty((n, dim), dtype=np.float16)
    owner = np.arange(n) * max(laws, 1) // max(n, 1)
    for start in range(0, n, 50_000):
        end = min(n, start + 50_000)
        block = centres[owner[start:end]] + 0.8 * rng.standard_normal((end - start, dim), dtype=np.float32) * scale
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:end] = block
    return out


def corpus_texts() -> list[str]:
    """Real chunk texts: the units of the XML laws of ../shared/corpora, cut at 512 whitespace tokens."""
    from legalsearch.chunking import chunk_law
    from legalsearch.sources import parse_file

    texts = []
    for path in sorted((CORPORA / "xml").glob("*.xml")):
        law = parse_file(path)
        texts += [c.text for c in chunk_law(law, lambda ts: [len(t.split()) for t in ts], 512)]
    return texts


def synthetic_laws(texts: list[str], vectors: np.ndarray, per_law: int, rng, first: int = 0) -> list[store.StoredLaw]:
    laws = []
    picks = rng.integers(0, len(texts), len(vectors))
    for number, start in enumerate(range(0, len(vectors), per_law), first):
        boe_id = f"BOE-A-2000-{number}"
        law = Law(boe_id, f"Ley {number}/2000, sintética", "text", "synthetic", rango="Ley", status="vigente")
        chunks = []
        for j, row in enumerate(range(start, min(start + per_law, len(vectors))), 1):
            text = texts[picks[row]]
            law.articles.append(Article(f"a{j}", "articulo", str(j), f"Artículo {j}", (), text,
                                        f"https://www.boe.es/buscar/act.php?id={boe_id}#a{j}", f"a{j}"))  # fmt: skip
            chunks.append(Chunk(f"{boe_id}#a{j}#0", boe_id, f"a{j}", 0, text))
        laws.append(store.StoredLaw(law, chunks, vectors[start : start + len(chunks)]))
    return laws


def sizes(index: Path) -> dict[str, int]:
    parts = {"catalogue (SQLite)": 0, "vectors f16": 0, "bm25": 0}
    for path in index.rglob("*"):
        if not path.is_file():
            continue
        if path.name.startswith(store.DATABASE):
            parts["catalogue (SQLite)"] += path.stat().st_size
        elif path.name == "vectors.f16.npy":
            parts["vectors f16"] += path.stat().st_size
        elif path.parent.name == "faiss":
            key = f"faiss {path.stem}"
            parts[key] = parts.get(key, 0) + path.stat().st_size
        elif "bm25" in path.parts:
            parts["bm25"] += path.stat().st_size
    return parts


def law_file(folder: Path, boe_id: str, texts: list[str], rng, per_law: int) -> Path:
    number = boe_id.rsplit("-", 1)[1]
    lines = [f"Ley {number}/2000, sintética. {boe_id}"]
    for j in range(1, per_law + 1):
        lines += [f"Artículo {j}. Texto.", texts[rng.integers(len(texts))].replace("\n", " ")]
    path = folder / f"{boe_id}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- subprocess probes (each measured in a fresh process) ----------------------------------------------------


def probe_search(index: Path, queries: int, dim: int) -> dict:
    import faiss
    import psutil

    from legalsearch.search import LegalSearch

    faiss.omp_set_num_threads(2)
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    search = LegalSearch.open(index)
    opened = time.perf_counter() - started
    rows = rng.integers(0, search.manifest["counts"]["chunks"], queries)
    vectors = search._snapshot.vectors(np.sort(rows)).astype(np.float32)
    vectors += 0.02 * rng.standard_normal(vectors.shape, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = dev_questions()[:queries] or [f"plazo de {w}" for w in ("recurso", "alzada", "fianza")]
    started = time.perf_counter()
    search.search_many([words[0]], k=10, mode="funnel", vectors=vectors[:1])
    first = time.perf_counter() - started
    rss = psutil.Process().memory_info().rss
    latency = {}
    for mode in MODES:
        times = []
        for i in range(queries):
            started = time.perf_counter()
            search.search_many([words[i % len(words)]], k=10, mode=mode, vectors=vectors[i : i + 1])
            times.append(time.perf_counter() - started)
        latency[mode] = (float(np.percentile(times, 50)) * 1e3, float(np.percentile(times, 95)) * 1e3)
    hybrid = search.retriever("hybrid", search.default_dim)
    return {"open_s": opened, "first_funnel_s": first, "rss_mb": rss / 2**20, "latency_ms": latency,
            "hybrid_dense": type(hybrid.dense).__name__.lower(),
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def probe_update(index: Path, job: str, folder: Path, dim: int) -> dict:
    """Add, change or remove 20 laws through the real pipeline (remove: one catalogue commit), embedding
    excluded (synthetic vectors)."""
    started = time.perf_counter()
    if job == "remove":
        manifest = store.read_manifest(index)
        with store.WriterLock(index):
            connection = store.connect(index / store.DATABASE)
            gone = {r[0] for r in connection.execute("SELECT boe_id FROM laws ORDER BY rowid LIMIT 20 OFFSET 100")}
            connection.close()
            store.commit(index, store.Change(removed=gone))
            store.compact(index, everything=False)
        del manifest
    else:
        sources = sorted(str(p) for p in folder.glob("*.txt"))
        indexing.build(sources, index, encoder=SyntheticEncoder(dim), max_tokens=512)
    with open("/proc/self/io") as f:
        io = dict(line.split(": ") for line in f.read().splitlines())
    return {"seconds": time.perf_counter() - started, "written": int(io["write_bytes"]),
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def probe_compact(index: Path) -> dict:
    started = time.perf_counter()
    with store.WriterLock(index):
        merged = store.compact(index, everything=True)
    return {"seconds": time.perf_counter() - started, "merged": merged,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def in_process(*arguments: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"probe {arguments} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- the run ----------------------------------------------------------------------------------------------


def build(index: Path, chunks: int, dim: int, per_law: int) -> tuple[float, list[str]]:
    rng = np.random.default_rng(0)
    texts = corpus_texts()
    vectors = synthetic_vectors(rng, chunks, dim, max(1, chunks // per_law))
    laws = synthetic_laws(texts, vectors, per_law, rng)
    encoder = SyntheticEncoder(dim)
    contents = store.IndexContents(
        model=indexing._model_record(encoder), dims=[dim, 128, 64], faiss_kind="flat", max_tokens=512, laws=laws,
        # no model to embed the nonsense probes with: the dense relevance threshold is recorded (relevance.py)
        defaults=indexing.defaults_for("synthetic-matryoshka", dim, [dim, 128, 64]) | {"funnel_dim": 64,
                                                                                       "match_cosine": 0.5},
    )  # fmt: skip
    started = time.perf_counter()
    with store.WriterLock(index):
        store.write_index(index, contents)
    seconds = time.perf_counter() - started
    del contents, laws, vectors  # the probes fork from this process: keep it small
    return seconds, texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--per-law", type=int, default=40)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        kind, index = args.probe[0], Path(args.probe[1])
        if kind == "search":
            print(json.dumps(probe_search(index, args.queries, args.dim)))
        elif kind == "compact":
            print(json.dumps(probe_compact(index)))
        else:
            print(json.dumps(probe_update(index, kind, Path(args.probe[2]), args.dim)))
        return 0
    if not (CORPORA / "xml").exists():
        print(f"skipped: {CORPORA / 'xml'} is missing (the chunk texts come from it)")
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="scale-bench-"))
    index = work / "index"
    if index.exists():
        shutil.rmtree(index)
    seconds, texts = build(index, args.chunks, args.dim, args.per_law)
    component = sizes(index)
    total = sum(component.values())
    print(f"synthetic index: {args.chunks:,} chunks at {args.dim} dims, {args.chunks // args.per_law:,} laws; "
          f"texts sampled from {len(texts):,} real chunks; built (written whole) in {seconds:.1f} s")  # fmt: skip
    print(f"disk: {total / 1e9:.2f} GB, {total / args.chunks:,.0f} bytes per chunk")
    for name, size in component.items():
        print(f"  {name:22} {size / 1e6:10.1f} MB  {size / args.chunks:8.0f} B/chunk")
    one = in_process("--probe", "search", str(index), "--queries", str(args.queries), "--dim", str(args.dim))
    print(f"open {one['open_s']:.2f} s; first funnel search {one['first_funnel_s'] * 1e3:.0f} ms; RSS after it "
          f"{one['rss_mb']:.0f} MB (target <= 1,536 MB without the model)")  # fmt: skip
    rng = np.random.default_rng(3)
    updates = {}
    for job in ("add", "change", "remove"):
        folder = work / job
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        first = 10**6 if job == "add" else 0
        for number in range(first, first + 20):
            law_file(folder, f"BOE-A-2000-{number}", texts, rng, args.per_law)
        updates[job] = in_process("--probe", job, str(index), str(folder), "--dim", str(args.dim))
    print(f"{'20 laws':10} {'wall s':>8} {'written MB':>11} {'peak RSS MB':>12} {'vs full rewrite':>16}")
    for job, r in updates.items():
        print(f"{job:10} {r['seconds']:8.2f} {r['written'] / 1e6:11.1f} {r['peak_rss_mb']:12.0f} "
              f"{r['seconds'] / seconds:15.4f}x")  # fmt: skip
    manifest = store.read_manifest(index)
    many = in_process("--probe", "search", str(index), "--queries", str(args.queries), "--dim", str(args.dim))
    print(f"latency, {args.queries} queries one at a time, 2 threads, query encoding excluded "
          f"(1 segment vs {len(manifest['segments'])} after the updates):")  # fmt: skip
    print(f"(hybrid's dense side: {one['hybrid_dense']})")
    print(f"{'mode':8} {'p50 ms':>8} {'p95 ms':>8} {'p50 segmented':>14} {'ratio':>7}")
    for mode in MODES:
        p50, p95 = one["latency_ms"][mode]
        after = many["latency_ms"][mode][0]
        print(f"{mode:8} {p50:8.1f} {p95:8.1f} {after:14.1f} {after / p50:6.2f}x")
    merged = in_process("--probe", "compact", str(index))
    print(f"merge of {merged['merged']['merged']} segments ({merged['merged']['rows']:,} rows): "
          f"{merged['seconds']:.1f} s, peak RSS {merged['peak_rss_mb']:.0f} MB ({merged['seconds'] / seconds:.2f}x "
          f"the first build)")  # fmt: skip
    print(f"segment folders now: {len(list((index / FOLDER).iterdir()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
