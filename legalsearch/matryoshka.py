"""Matryoshka maths: a model trained with MatryoshkaLoss gives vectors whose first `dim` components, re-normalised,
are a good vector of that dim. Storage and the query side need only this, never the embedding module."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ModelError

FUNNEL_DIMS = (128, 64)  # built by default beside the full dim: the funnel's shortlist dims


def matryoshka(vectors: np.ndarray, dim: int) -> np.ndarray:
    """First `dim` components of each row, re-normalised to unit length (float32)."""
    prefix = np.asarray(vectors[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(prefix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return prefix / norms


def dims_for(full_dim: int, requested: Sequence[int] | None = None) -> list[int]:
    """The Matryoshka dims to build FAISS files for, for a model of `full_dim`: the requested ones (checked), or
    the full dim and the small dims the funnel shortlists at (128 and 64, where they fit). Other dims cost a
    FAISS copy of every vector each, so they are built when asked for (`--dims`)."""
    if requested:
        bad = [d for d in requested if d <= 0 or d > full_dim]
        if bad:
            raise ModelError(f"dims {bad} do not fit a {full_dim}-dimensional model (use 1…{full_dim})")
        return sorted(set(requested), reverse=True)
    return sorted({full_dim, *(d for d in FUNNEL_DIMS if d < full_dim)}, reverse=True)
