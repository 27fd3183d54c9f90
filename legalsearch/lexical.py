"""BM25 over the same chunks as the vectors, with Spanish analysis: lower case, accents folded, Snowball
stemming (PyStemmer), Spanish stopwords (bm25s's tokenizer and list). Each segment saves its own postings as
plain files (`bm25/`, no pickle); a search combines the segments' postings with statistics counted over all of
their live rows."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from .errors import IndexFormatError
from .folding import fold

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


def stopwords() -> frozenset[str]:
    """The Spanish stopwords BM25 leaves out (folded)."""
    return _stopword_set()


def stems(text: str) -> set[str]:
    """The stems BM25 matches `text` by (folded, stopwords out): to mark a query's words in a passage."""
    _, stemmer, _ = _analysis()
    stopwords = _stopword_set()
    words = [w for w in re.findall(TOKEN_PATTERN, fold(text)) if w not in stopwords]
    return set(stemmer.stemWords(words))


def stem(word: str) -> str:
    _, stemmer, _ = _analysis()
    return stemmer.stemWord(fold(word))


K1, B = 1.5, 0.75  # BM25, Lucene's variant (idf = ln(1 + (N - df + 0.5) / (df + 0.5)))
TERMS, INDPTR, DOCS, TFS, LENGTHS = "terms.json", "indptr.npy", "docs.npy", "tfs.npy", "lengths.npy"
FILES = (TERMS, INDPTR, DOCS, TFS, LENGTHS)


@dataclass
class Postings:
    """One segment's BM25 postings: for each term (sorted), the segment's local rows holding it and how often;
    the length of every row in tokens. Saved as plain `.npy` arrays and a JSON list of terms, memory-mapped when
    read. Scores are computed at query time from collection-wide statistics (`LexicalIndex`), so a term's IDF is
    the same whichever segment holds a chunk."""

    terms: list[str]
    indptr: np.ndarray  # int64, len(terms) + 1
    docs: np.ndarray  # int32 local rows, grouped by term, ascending within a term
    tfs: np.ndarray  # float32 term frequencies
    lengths: np.ndarray  # int32 tokens per row
    folder: Path | None = None  # where they were read from (named when a value read is out of range)

    @classmethod
    def build(cls, texts: Sequence[str]) -> Postings:
        tokens = analyze(texts) if texts else []
        return cls.from_tokens(tokens)

    @classmethod
    def from_tokens(cls, tokens: Sequence[Sequence[str]]) -> Postings:
        lengths = np.fromiter((len(t) for t in tokens), dtype=np.int32, count=len(tokens))
        vocabulary: dict[str, int] = {}
        ids = np.fromiter((vocabulary.setdefault(w, len(vocabulary)) for doc in tokens for w in doc), dtype=np.int64)
        if not len(ids):
            return cls([], np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), lengths)
        terms = sorted(vocabulary)
        rank = np.empty(len(terms), dtype=np.int64)
        rank[[vocabulary[t] for t in terms]] = np.arange(len(terms))
        term_ids = rank[ids]
        rows = np.repeat(np.arange(len(tokens), dtype=np.int64), lengths)
        keys, counts = np.unique(term_ids.astype(np.int64) * len(tokens) + rows, return_counts=True)
        term_of = keys // len(tokens)
        indptr = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=len(terms)), out=indptr[1:])
        return cls(terms, indptr, (keys % len(tokens)).astype(np.int32), counts.astype(np.float32), lengths)

    @classmethod
    def merge(cls, parts: Sequence[tuple[Postings, np.ndarray | None]]) -> Postings:
        """One segment's postings from several (postings, kept local rows or None for all), rows renumbered in
        order: a merge re-tokenises nothing."""
        vocabulary = sorted(set().union(*(p.terms for p, _ in parts))) if parts else []
        position = {t: i for i, t in enumerate(vocabulary)}
        term_ids, docs, tfs, lengths, offset = [], [], [], [], 0
        for postings, kept in parts:
            postings._check_values(np.asarray(postings.docs), np.asarray(postings.tfs))  # a merge reads them all
            n = len(postings.lengths)
            renumber = np.full(n, -1, dtype=np.int64)
            kept = np.arange(n) if kept is None else np.asarray(kept, dtype=np.int64)
            renumber[kept] = np.arange(len(kept)) + offset
            local_terms = np.array([position[t] for t in postings.terms], dtype=np.int64)
            owner = np.repeat(local_terms, np.diff(postings.indptr)) if len(local_terms) else np.zeros(0, np.int64)
            new_rows = renumber[np.asarray(postings.docs)]
            live = new_rows >= 0
            term_ids.append(owner[live])
            docs.append(new_rows[live])
            tfs.append(np.asarray(postings.tfs)[live])
            lengths.append(np.asarray(postings.lengths)[kept])
            offset += len(kept)
        if not parts:
            return cls([], np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int32))
        term_ids, docs, tfs = np.concatenate(term_ids), np.concatenate(docs), np.concatenate(tfs)
        order = np.lexsort((docs, term_ids))
        indptr = np.zeros(len(vocabulary) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_ids, minlength=len(vocabulary)), out=indptr[1:])
        return cls(vocabulary, indptr, docs[order].astype(np.int32), tfs[order], np.concatenate(lengths))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TERMS).write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")
        for name, array in ((INDPTR, self.indptr), (DOCS, self.docs), (TFS, self.tfs), (LENGTHS, self.lengths)):
            np.save(folder / name, array, allow_pickle=False)

    @classmethod
    def load(cls, folder: Path, rows: int) -> Postings:
        """The postings saved in `folder` for a segment of `rows` rows, checked for shape."""
        try:
            terms = json.loads((folder / TERMS).read_text(encoding="utf-8"))
            arrays = [np.load(folder / n, mmap_mode="r", allow_pickle=False) for n in (INDPTR, DOCS, TFS, LENGTHS)]
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{folder}: unreadable BM25 postings ({exc}); rebuild the index") from None
        indptr, docs, tfs, lengths = arrays
        if (
            not isinstance(terms, list) or any(a.ndim != 1 for a in arrays) or len(indptr) != len(terms) + 1
            or docs.shape != tfs.shape or len(lengths) != rows or int(indptr[-1]) != len(docs)
        ):  # fmt: skip
            raise _out_of_range(folder, "arrays that do not match each other")
        kinds = (indptr.dtype.kind, docs.dtype.kind, tfs.dtype.kind, lengths.dtype.kind)
        if kinds[0] not in "iu" or kinds[1] not in "iu" or kinds[2] != "f" or kinds[3] not in "iu":
            raise _out_of_range(folder, f"arrays of {', '.join(str(a.dtype) for a in arrays)}")
        # cheap here (one value per term or row); each term's rows and frequencies are checked as they are read
        if int(indptr[0]) != 0 or (len(indptr) > 1 and np.diff(indptr).min() < 0):
            raise _out_of_range(folder, "term offsets that go backwards")
        if len(lengths) and int(lengths.min()) < 0:
            raise _out_of_range(folder, "a negative row length")
        return cls(terms, indptr, docs, tfs, lengths, folder)

    def postings(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """The local rows holding term number `t` and how often, checked (`_check_values`)."""
        start, end = int(self.indptr[t]), int(self.indptr[t + 1])
        docs, tfs = np.asarray(self.docs[start:end]), np.asarray(self.tfs[start:end])
        self._check_values(docs, tfs)
        return docs, tfs

    def _check_values(self, docs: np.ndarray, tfs: np.ndarray) -> None:
        """A row outside the segment or a frequency that is not a positive number makes the index damaged: never
        a wrong score or a crash."""
        if len(docs) and (int(docs.min()) < 0 or int(docs.max()) >= len(self.lengths)):
            raise _out_of_range(self.folder, f"rows outside the segment's {len(self.lengths)} rows")
        if len(tfs) and not (np.isfinite(tfs).all() and tfs.min() > 0):
            raise _out_of_range(self.folder, "a term frequency that is not a positive number")

    @cached_property
    def vocab(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.terms)}


def _out_of_range(folder: Path | None, what: str) -> IndexFormatError:
    return IndexFormatError(
        f"{folder or 'BM25 postings'}: BM25 postings with {what}; the index is damaged: rebuild it into a new --index"
    )


@dataclass
class Part:
    """A segment's postings in a search: where its rows start, and which of them are live (None: all)."""

    postings: Postings
    base: int
    live: np.ndarray | None  # bool per local row

    @cached_property
    def live_count(self) -> int:
        return len(self.postings.lengths) if self.live is None else int(self.live.sum())

    @cached_property
    def live_length(self) -> float:
        lengths = np.asarray(self.postings.lengths, dtype=np.float64)
        return float(lengths.sum() if self.live is None else lengths[self.live].sum())

    def document_frequency(self, term: str) -> int:
        t = self.postings.vocab.get(term)
        if t is None:
            return 0
        docs, _ = self.postings.postings(t)
        if self.live is None:
            return len(docs)
        return int(self.live[docs].sum())


class LexicalIndex:
    """BM25 over the live rows of several segments with collection-wide statistics (N, average length, each
    term's document frequency counted over every live row), so a segmented index scores exactly as one built at
    once over the same chunks."""

    def __init__(self, parts: Sequence[Part], size: int) -> None:
        self.parts = list(parts)
        self.size = size  # global rows (the highest row + 1)
        self.count = sum(p.live_count for p in self.parts)
        total = sum(p.live_length for p in self.parts)
        self.average_length = total / self.count if self.count else 1.0

    def knows(self, term: str) -> bool:
        return any(term in p.postings.vocab for p in self.parts)

    def idf(self, term: str) -> float:
        """The term's IDF over the live rows (the highest for a term no row holds)."""
        return self._idf(term)

    def _idf(self, term: str) -> float:
        df = sum(p.document_frequency(term) for p in self.parts)
        return float(np.log(1 + (self.count - df + 0.5) / (df + 0.5)))

    def scores(self, weights: dict[str, float], mask: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every global row for terms weighted by `weights` (float32, 0 where a row is dead or
        masked out)."""
        scores = np.zeros(self.size, dtype=np.float32)
        for term, weight in weights.items():
            idf = np.float32(weight * self._idf(term))
            for part in self.parts:
                t = part.postings.vocab.get(term)
                if t is None:
                    continue
                docs, tf = part.postings.postings(t)
                norm = np.float32(K1) * (
                    np.float32(1 - B) + np.float32(B) * part.postings.lengths[docs] / np.float32(self.average_length)
                )
                contribution = idf * (tf / (norm + tf))
                if part.live is not None:
                    contribution *= part.live[docs]
                scores[docs + part.base] += contribution.astype(np.float32)
        if mask is not None:
            scores *= mask
        return scores

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
            weights: dict[str, float] = {}
            for token in tokens:  # a word said twice counts twice, as in BM25 over the query's tokens
                if self.knows(token):
                    weights[token] = weights.get(token, 0.0) + 1.0
            for token in dict.fromkeys(expanded[i]) if expanded else ():
                if token not in weights and self.knows(token):
                    weights[token] = weight
            if not weights:
                results.append([])
                continue
            scores = self.scores(weights, mask)
            k_here = min(k, len(scores))
            top = np.argpartition(-scores, k_here - 1)[:k_here] if k_here < len(scores) else np.arange(len(scores))
            top = top[np.lexsort((top, -scores[top]))]
            results.append([(int(r), float(scores[r])) for r in top if scores[r] > 0])
        return results
