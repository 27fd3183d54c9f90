"""BM25 over the same chunks as the vectors, with Spanish analysis: lower case, accents folded, Snowball
stemming (PyStemmer), Spanish stopwords. Built with bm25s and saved as plain files (`bm25/`, no pickle) in the
index folder; rebuilt with the index on every write, so it always covers exactly the indexed chunks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from .sources.structure import fold

FOLDER = "bm25"
TOKEN_PATTERN = r"(?u)\b\w+\b"  # keep one-letter and number tokens: "a)", "24", "1902" matter in law


@cache
def _analysis():
    import bm25s
    import Stemmer
    from bm25s.stopwords import STOPWORDS_SPANISH

    return bm25s, Stemmer.Stemmer("spanish"), sorted({fold(w) for w in STOPWORDS_SPANISH})


@cache
def _stopword_set() -> frozenset[str]:
    return frozenset(_analysis()[2])


def analyze(texts: Sequence[str]) -> list[list[str]]:
    """Tokens of each text as BM25 sees them: folded, stopwords out, stemmed."""
    bm25s, stemmer, stopwords = _analysis()
    folded = [fold(t) for t in texts]
    return bm25s.tokenize(
        folded, token_pattern=TOKEN_PATTERN, stopwords=stopwords, stemmer=stemmer, return_ids=False,
        show_progress=False,
    )  # fmt: skip


def stems(text: str) -> set[str]:
    """The stems BM25 matches `text` by (folded, stopwords out): to mark a query's words in a passage."""
    _, stemmer, _ = _analysis()
    stopwords = _stopword_set()
    words = [w for w in re.findall(TOKEN_PATTERN, fold(text)) if w not in stopwords]
    return set(stemmer.stemWords(words))


def stem(word: str) -> str:
    _, stemmer, _ = _analysis()
    return stemmer.stemWord(fold(word))


def build(texts: Sequence[str], folder: Path) -> None:
    """Index `texts` (row i = chunk row i) and save the BM25 index into `folder`."""
    bm25s, _, _ = _analysis()
    retriever = bm25s.BM25(method="lucene")
    retriever.index(analyze(texts) if texts else [[""]], show_progress=False)
    retriever.save(str(folder), show_progress=False)


class LexicalIndex:
    def __init__(self, folder: Path) -> None:
        bm25s, _, _ = _analysis()
        self.retriever = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        self.size = int(self.retriever.scores["num_docs"])
        self.vocab = self.retriever.vocab_dict

    def search(
        self,
        queries: Sequence[str],
        k: int,
        mask: np.ndarray | None = None,
        expansions: Sequence[str] | None = None,
        weight: float = 0.0,
    ) -> list[list[tuple[int, float]]]:
        """(chunk row, score) of the best `k` chunks per query, best first; rows where `mask` is 0 are left out.
        `expansions[i]` (legal terms for query i) adds `weight` times their BM25 score. A query with no indexed
        word has no results."""
        expanded = analyze(expansions) if expansions is not None and weight > 0 else None
        results: list[list[tuple[int, float]]] = []
        for i, tokens in enumerate(analyze(queries)):
            known = [t for t in tokens if t in self.vocab]
            extra = [t for t in dict.fromkeys(expanded[i]) if t in self.vocab and t not in known] if expanded else []
            if not known and not extra:
                results.append([])
            elif not extra:
                rows, scores = self.retriever.retrieve(
                    [known], k=min(k, self.size), show_progress=False, weight_mask=mask, n_threads=1
                )
                results.append([(int(r), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if s > 0])
            else:
                results.append(self._weighted(known, extra, weight, k, mask))
        return results

    def _weighted(self, known: list[str], extra: list[str], weight: float, k: int, mask) -> list[tuple[int, float]]:
        scores = self.retriever.get_scores(extra) * weight
        if known:
            scores += self.retriever.get_scores(known)
        if mask is not None:
            scores *= mask
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [(int(r), float(scores[r])) for r in top if scores[r] > 0]
