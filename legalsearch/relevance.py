"""How well a hit answers its question, on a scale an agent can threshold: `relevance` in [0, 1], and
`good_match` when it reaches `GOOD` (0.5). Ranks say which hit is better; this says whether any is good.

Two kinds of evidence, the better of which counts, so the signal holds whether the dense model is strong or weak:

* lexical — the share of the question's words (stopwords out, stemmed, each weighted by its IDF in the index)
  that the unit's text holds; a word also counts when the text holds a legal term the lexicon gives for it
  ("inquilino" → "arrendatario"). A question whose words no unit holds ("xyzzy qwerty") has none.
* dense — the hit's cosine against the model's match threshold: 0.5 at the threshold, 1 at `SPAN` above it, 0 at
  `SPAN` below. The threshold is the index's `defaults.match_cosine` where one was measured for its model, else
  the best cosine that nonsense strings (`NONSENSE`) reach in the index plus `MARGIN`: a random or weak model,
  whose cosines say nothing, then gives no evidence, and the lexical side decides.

A unit the question cites ("artículo 14 CE") is a good match by definition (1.0).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .embedding import Encoder, models_home
from .files import write_atomic
from .folding import fold
from .lexical import TOKEN_PATTERN, stem, stems, stopwords
from .lexicon import entries

GOOD = 0.5  # relevance from which a hit counts as a good match
MARGIN = 0.05  # cosine above the nonsense floor where dense evidence reaches GOOD
SPAN = 0.05  # cosine from the threshold to full (or no) dense evidence
# questions nobody asks of Spanish law: gibberish, and fluent Spanish and English about anything else. The best
# cosine they reach in an index is what a match must beat: a weak model (all-MiniLM-L6-v2 on Spanish) puts any
# fluent Spanish near any article, and its floor rises with it.
NONSENSE = (
    "xyzzy qwerty", "asdf ghjk ñlkj", "blorft snarg frobnicate", "0x7f3a 9bq2 zz81",
    "receta de paella valenciana con marisco", "resultado del partido de fútbol de ayer",
    "mejores películas de ciencia ficción", "el gato duerme en el sofá del salón",
    "qué tiempo hará mañana en la playa", "las lunas de Júpiter y los anillos de Saturno",
    "how to install python on windows", "best chocolate cake recipe",
)  # fmt: skip


def probe_file(encoder: Encoder) -> Path:
    """Where `probe_vectors` keeps the probes' vectors of one model and runtime."""
    key = json.dumps([asdict(encoder.info), NONSENSE], sort_keys=True, default=str)
    return models_home() / "probes" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"


def probe_vectors(encoder: Encoder) -> np.ndarray:
    """The `NONSENSE` strings embedded by `encoder`: computed once per model and runtime, then read from
    `models_home()/probes/` (a dozen vectors; embedding them costs a large model seconds on a CPU, on every
    `ask`). A cache that cannot be read or written is only a cost, never an error."""
    path = probe_file(encoder)
    try:
        cached = np.load(path, allow_pickle=False)
        if cached.shape == (len(NONSENSE), encoder.dim):
            return cached
    except (OSError, ValueError):
        pass
    vectors = np.asarray(encoder.encode(list(NONSENSE), batch_size=32), dtype=np.float32)
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    with contextlib.suppress(OSError):
        write_atomic(path, buffer.getvalue())
    return vectors


@dataclass(frozen=True)
class Word:
    text: str  # as the question writes it
    stem: str
    weight: float  # its IDF in the index (the highest for a word no unit holds)
    legal: tuple[frozenset[str], ...] = ()  # stems of each legal term the lexicon gives for it


def question_words(query: str, idf) -> list[Word]:
    """The words of `query` that carry meaning, each with its stem, its IDF (`idf(stem)`) and the lexicon's legal
    terms for it."""
    skip = stopwords()
    legal: dict[str, list[frozenset[str]]] = {}
    spaced = " " + " ".join(re.findall(r"\w+", fold(query))) + " "
    for key, terms in entries().items():
        if f" {key} " in spaced:
            for word in key.split():
                legal.setdefault(word, []).extend(frozenset(stems(t)) for t in terms)
    words: dict[str, Word] = {}
    for text in re.findall(TOKEN_PATTERN, query):
        folded = fold(text)
        if folded in skip:
            continue
        root = stem(folded)
        if root not in words:
            words[root] = Word(text, root, float(idf(root)), tuple(t for t in legal.get(folded, ()) if t))
    return list(words.values())


def lexical_evidence(words: list[Word], text: str) -> tuple[float, list[str]]:
    """(IDF-weighted share of `words` that `text` holds, those words as the question writes them)."""
    total = sum(w.weight for w in words)
    if not words or total <= 0:
        return 0.0, []
    held = stems(text)
    found = [w for w in words if w.stem in held or any(term <= held for term in w.legal)]
    return sum(w.weight for w in found) / total, [w.text for w in found]


def dense_evidence(cosine: float | None, threshold: float | None) -> float:
    """0…1: 0.5 at `threshold`, rising linearly to 1 at `SPAN` above it; 0 without a cosine."""
    if cosine is None or threshold is None:
        return 0.0
    return min(1.0, max(0.0, 0.5 + (cosine - threshold) / (2 * SPAN)))
