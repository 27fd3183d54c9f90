"""The Matryoshka funnel against exact full-dim search, on real vectors at scale (nothing replicated).

Passages are real texts of the laws of ../shared/corpora at every granularity a chunker might index: each
article (as the model reads it, cut at its max length), each paragraph, each window of two and of three
paragraphs and each sentence of four words or more, deduplicated: 106,683 texts from 31 laws. Queries are the
60 dev questions and --headings article titles (held out of the passages). Vectors come from --model (default
all-MiniLM-L6-v2; bench/matryoshka_train.py makes a Matryoshka-trained one), encoded once, cached in --cache.

Per method: latency per query, one query at a time (what an interactive search pays) and as one batch, each as
a ratio to exact full-dim search in the same run (FAISS flat, --threads threads), and recall@10 against exact
full-dim search (strict, and counting rows that tie with the 10th exact one). The funnel is what `--mode
funnel` runs: a FAISS flat search at the small dim for the shortlist, then exact cosine at full dim over the
shortlisted rows of the full-dim float index.

    python bench/funnel_real.py [--model DIR] [--cache DIR] [--shortlists 200 500 1000 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from common import corpus_laws, default_model, dev_questions

from legalsearch.chunking import split_sentences
from legalsearch.embedding import load_encoder, matryoshka
from legalsearch.segments import build_faiss


def corpus_texts(headings: int) -> tuple[list[str], list[str]]:
    """(passages, heading queries): every article, paragraph, 2- and 3-paragraph window and sentence, deduplicated;
    `headings` article titles that are not passages themselves."""
    passages: dict[str, None] = {}
    titles: list[str] = []
    for law in corpus_laws():
        for article in law.articles:
            paragraphs = [p for p in article.text.split("\n") if len(p.split()) >= 4]
            windows = [paragraphs[i : i + n] for n in (2, 3) for i in range(len(paragraphs) - n + 1)]
            units = [article.text, *paragraphs, *("\n".join(w) for w in windows)]
            units += [s for p in paragraphs for s in split_sentences(p) if len(s.split()) >= 4]
            passages.update((u, None) for u in units if u.strip())
            title = article.heading.split(".", 1)[-1].strip()
            if len(title.split()) >= 3:
                titles.append(title)
    titles = [t for t in dict.fromkeys(titles) if t not in passages]
    return list(passages), random.Random(0).sample(titles, min(headings, len(titles)))


def embed(model: str, texts: list[str], cache: Path) -> np.ndarray:
    key = hashlib.sha256((model + "\x1f" + "\x1e".join(texts)).encode()).hexdigest()[:16]
    file = cache / f"vectors-{key}.npy"
    if file.exists():
        return np.load(file)
    encoder = load_encoder(model, device="cpu")
    started = time.perf_counter()
    vectors = encoder.encode(texts, batch_size=64)
    print(f"encoded {len(texts)} texts in {time.perf_counter() - started:.0f} s "
          f"({encoder.info.backend} {encoder.info.precision})", flush=True)  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    np.save(file, vectors)
    return vectors


def float_rows(index) -> np.ndarray:
    """The float32 rows a flat FAISS index holds, as an array view (what the library rescores from)."""
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


def rescore(rows: np.ndarray, query: np.ndarray, full_rows: np.ndarray, k: int = 10) -> np.ndarray:
    """The library's re-ranking step: exact cosine at full dim over the shortlisted rows of the full-dim float
    index (einsum: a BLAS product right after FAISS's OpenMP threads is 3-4× slower on 2 cores)."""
    rows = np.sort(rows[rows >= 0])
    exact = np.einsum("ij,j->i", full_rows[rows], query)
    return rows[np.argsort(-exact, kind="stable")[:k]]


def recall_at_10(found, truth) -> float:
    return float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth, strict=True)]))


def recall_with_ties(found, truth, queries: np.ndarray, full_rows: np.ndarray) -> float:
    """recall@10 where a found row whose exact cosine equals the 10th exact one (to 1e-5) counts: legal texts
    repeat ("(Derogado)", "Sin contenido"), and which of equal vectors comes 10th is arbitrary."""
    hits = []
    for f, t, q in zip(found, truth, queries, strict=True):
        tenth = float(full_rows[t[9]] @ q)
        hits.append(sum(float(full_rows[r] @ q) >= tenth - 1e-5 for r in f[:10]) / 10)
    return float(np.mean(hits))


def timed(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "legalsearch" / "bench-funnel")
    parser.add_argument("--headings", type=int, default=440)
    parser.add_argument("--shortlists", type=int, nargs="+", default=[200, 500, 1000, 2000])
    parser.add_argument("--small", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    model = args.model or default_model()
    passages, headings = corpus_texts(args.headings)
    queries_text = dev_questions() + headings
    vectors = embed(model, passages, args.cache)
    queries = embed(model, queries_text, args.cache)
    vectors = vectors.astype(np.float16).astype(np.float32)  # what the index's float16 vector file holds
    full = vectors.shape[1]
    print(f"{len(passages)} real passages, {len(queries)} queries ({len(queries_text) - len(headings)} dev questions, "
          f"{len(headings)} headings); model {Path(model).name}, {full} dims; {args.threads} threads; "
          f"best of {args.repeat}", flush=True)  # fmt: skip

    exact = build_faiss(vectors, full, "flat")
    stored = float_rows(exact)
    single = lambda index, q, n: [index.search(q[i : i + 1], n)[1][0] for i in range(len(q))]  # noqa: E731
    exact_one, truth = timed(lambda: single(exact, queries, 10), args.repeat)
    exact_batch, _ = timed(lambda: exact.search(queries, 10), args.repeat)
    header = (
        f"{'method':34} {'ms/query 1 by 1':>16} {'ratio':>6} {'batch ratio':>12} {'recall@10':>10} {'with ties':>10}"
    )
    print(header)
    print(f"{'exact, full dim':34} {exact_one / len(queries) * 1e3:16.3f} {1:6.2f} {1:12.2f} {1:10.4f} {1:10.4f}")
    for small in args.small:
        index = build_faiss(vectors, small, "flat")
        small_q = matryoshka(queries, small)
        for shortlist in args.shortlists:

            def one_by_one(index=index, q=small_q, s=shortlist):
                return [rescore(index.search(q[i : i + 1], s)[1][0], queries[i], stored) for i in range(len(q))]

            def batch(index=index, q=small_q, s=shortlist):
                _, rows = index.search(q, s)
                return [rescore(r, queries[i], stored) for i, r in enumerate(rows)]

            seconds, found = timed(one_by_one, args.repeat)
            batch_seconds, _ = timed(batch, args.repeat)
            print(f"{f'funnel {small}→{full}, shortlist {shortlist}':34} {seconds / len(queries) * 1e3:16.3f} "
                  f"{seconds / exact_one:6.2f} {batch_seconds / exact_batch:12.2f} "
                  f"{recall_at_10(found, truth):10.4f} {recall_with_ties(found, truth, queries, stored):10.4f}",
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
