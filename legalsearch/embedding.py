"""Sentence embeddings. The only module that imports sentence-transformers (and torch).

Every text is encoded once at the model's full dimension and L2-normalised; a Matryoshka dim is the prefix of
that vector, re-normalised (`matryoshka`), so cosine similarity stays an inner product at every dim.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "dariolopez/bge-m3-es-legal-tmp-3"
# Dims the legal model was trained at (MatryoshkaLoss); other models get the ones that fit them.
MATRYOSHKA_DIMS = (1024, 768, 512, 256, 128, 64)


def default_model() -> str:
    return os.environ.get("LEGALSEARCH_MODEL", DEFAULT_MODEL)


def matryoshka(vectors: np.ndarray, dim: int) -> np.ndarray:
    """First `dim` components of each row, re-normalised to unit length (float32)."""
    prefix = np.asarray(vectors[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(prefix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return prefix / norms


def dims_for(full_dim: int, requested: Sequence[int] | None = None) -> list[int]:
    """The Matryoshka dims to build for a model of `full_dim`: the requested ones (checked), or the standard
    ones that fit, always including the full dim."""
    if requested:
        bad = [d for d in requested if d <= 0 or d > full_dim]
        if bad:
            raise ModelError(f"dims {bad} do not fit a {full_dim}-dimensional model (use 1…{full_dim})")
        return sorted(set(requested), reverse=True)
    return sorted({full_dim, *(d for d in MATRYOSHKA_DIMS if d < full_dim)}, reverse=True)


def _local_revision(folder: Path) -> str:
    """A fingerprint of a local model folder: its small config files' contents and its weights' sizes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        if path.suffix in (".json", ".txt", ".model") and path.stat().st_size < 5_000_000:
            digest.update(path.read_bytes())
        else:
            digest.update(str(path.stat().st_size).encode())
    return "local-" + digest.hexdigest()[:16]


def _hub_revision(model: SentenceTransformer) -> str | None:
    for module in model.modules():
        config = getattr(module, "config", None)
        commit = getattr(config, "_commit_hash", None)
        if commit:
            return commit
    return None


@dataclass
class EncoderInfo:
    model_id: str
    revision: str | None
    dim: int
    max_seq_length: int
    device: str
    precision: str


class Encoder:
    """A loaded sentence-transformers model: `encode()` gives normalised float32 vectors at full dim."""

    def __init__(self, model: SentenceTransformer, model_id: str, revision: str | None, precision: str) -> None:
        self.model = model
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else None
        dim = dim or model.get_sentence_embedding_dimension()
        self.info = EncoderInfo(model_id, revision, int(dim), int(model.max_seq_length), str(model.device), precision)
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes in the model, special tokens included, before truncation."""
        if not texts:
            return []
        encoded = self.model.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 16,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Unit vectors (n, dim) in float32. `progress(n_done)` is called after each batch."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # longest first: batches of similar length waste less padding (sentence-transformers does the same)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with self._lock:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                vectors = self.model.encode(
                    [texts[i] for i in batch],
                    batch_size=batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
                out[batch] = vectors.astype(np.float32)
                if progress is not None:
                    progress(len(batch))
        return out


def _ensure_downloadable(model_id: str, notify: Callable[[str], None] | None) -> None:
    """A hub model not in the local cache is downloaded only after saying what and how big; with no network
    (or HF_HUB_OFFLINE=1) fail at once instead of waiting on retries."""
    from huggingface_hub import model_info, snapshot_download

    try:
        snapshot_download(model_id, local_files_only=True)
        return
    except Exception:
        pass
    how = (
        f"on a machine with internet run `huggingface-cli download {model_id} --local-dir DIR`, copy DIR here and "
        "pass --model DIR (or set LEGALSEARCH_MODEL=DIR)"
    )
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError(
            f"cannot load model from Hugging Face hub id {model_id!r}: not cached and HF_HUB_OFFLINE=1; {how}"
        )
    try:
        info = model_info(model_id, timeout=10, files_metadata=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelError(
            f"cannot load model from Hugging Face hub id {model_id!r}: not cached and the hub cannot be reached "
            f"or does not know it [{reason}]; {how}"
        ) from None
    size = sum(sibling.size or 0 for sibling in info.siblings or [])
    if notify is not None:
        notify(f"downloading {model_id} ({size / 1e9:.2f} GB) from the Hugging Face hub into its local cache")


def load_encoder(
    model_id: str | None = None, device: str | None = None, notify: Callable[[str], None] | None = None
) -> Encoder:
    """Load a sentence-transformers model from a local folder or the Hugging Face hub.

    `device` None picks CUDA (in fp16) when available, else the CPU. A hub model that is not cached is downloaded
    after `notify` says what and how big. Errors name what was tried and how to point at a local copy.
    """
    model_id = model_id or default_model()
    try:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelError(f"sentence-transformers is not installed ({exc}); pip install legalsearch") from None
    transformers.logging.set_verbosity_error()  # our progress bars and errors say what matters
    transformers.utils.logging.disable_progress_bar()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    local = Path(model_id).expanduser()
    is_local = local.exists()
    looks_like_path = model_id.startswith((".", "/", "~")) or model_id.count("/") > 1 or "\\" in model_id
    if not is_local and looks_like_path:
        raise ModelError(f"no model folder at {local}; pass an existing folder or a Hugging Face hub id (owner/name)")
    if is_local and not (local / "modules.json").exists() and not (local / "config.json").exists():
        raise ModelError(f"model folder {local} holds no sentence-transformers model (no modules.json or config.json)")
    if not is_local:
        _ensure_downloadable(model_id, notify)
    try:
        model = SentenceTransformer(str(local) if is_local else model_id, device=device)
    except Exception as exc:
        where = f"local folder {local}" if is_local else f"Hugging Face hub id {model_id!r}"
        hint = (
            "it is not a sentence-transformers model folder"
            if is_local
            else "download failed or the files are not a sentence-transformers model; retry, or pass --model DIR"
        )
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load model from {where}: {hint} [{reason}]") from None
    precision = "fp32"
    if str(model.device).startswith("cuda"):
        model.half()
        precision = "fp16"
    revision = _local_revision(local) if is_local else _hub_revision(model)
    return Encoder(model, str(local.resolve()) if is_local else model_id, revision, precision)
