"""Query encoding without sentence-transformers: the model's OpenVINO export run by OpenVINO itself, with the
model's fast tokenizer (`tokenizers`), its pooling and normalisation.

`ask` encodes one question. Loading sentence-transformers for it imports torch, transformers, optimum and
scikit-learn, seconds of every call; this reads the files an index's OpenVINO export already left beside the
model and gives the same vectors (tests/test_ask_speed.py compares them). OpenVINO's compiled model is cached
(`CACHE_DIR` in the export folder; the graph only, its weights stay in the export), so a later call loads it
instead of compiling again.

`legalsearch ask` gets it from the query-encoder daemon (`encoder_daemon`) where it can, so that a second ask
imports neither OpenVINO nor the model; the Python API and `serve` hold it in-process.

It serves only what it can reproduce exactly — an OpenVINO float export already made, a Transformer → Pooling
(CLS or mean) → optional Normalize pipeline, no default prompt — and `load_query_encoder` falls back to
`embedding.load_encoder` for anything else.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .embedding import (
    EncoderInfo,
    _export_folder,
    _local_revision,
    exported_file,
    load_encoder,
    resolve_runtime,
)

PLAIN_MODULES = (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"])  # sentence-transformers' classes
OV_CACHE = "cache"  # inside the export's openvino/ folder: OpenVINO's compiled models


def ov_cache_dir(export: Path) -> Path:
    """Where OpenVINO keeps compiled models of the export in `export` (a folder legalsearch made)."""
    return export / "openvino" / OV_CACHE


class QueryEncoder:
    """The `Encoder` interface (`info`, `dim`, `encode`, `count_tokens`) over an OpenVINO export."""

    def __init__(self, folder: Path, xml: Path, info: EncoderInfo, pooling: str, hint: str | None) -> None:
        import openvino
        from tokenizers import Tokenizer

        self.info = info
        self.pooling = pooling
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._counter = self._tokenizer  # counting and encoding use separate calls, under the lock
        pad = _pad_token(folder)
        self._pad_id = self._tokenizer.token_to_id(pad) if pad else 0
        core = openvino.Core()
        cache = ov_cache_dir(xml.parent.parent)
        # OPTIMIZE_SIZE: the cache keeps the compiled graph, not a second copy of the weights (read from the .bin)
        config = {"PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": str(cache), "CACHE_MODE": "OPTIMIZE_SIZE"}
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        self._model = core.compile_model(str(xml), "CPU", config)
        self._inputs = [port.get_any_name() for port in self._model.inputs]
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.info.dim

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._lock:
            return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def encode(
        self, texts: Sequence[str], batch_size: int = 16, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Unit vectors (n, dim) in float32, as `embedding.Encoder.encode` gives them."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with self._lock:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                out[batch] = self._forward([texts[i] for i in batch])
                if progress is not None:
                    progress(len(batch))
        return out

    def _forward(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        length = min(max(len(e.ids) for e in encoded), self.info.max_seq_length)
        ids = np.full((len(texts), length), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.int64)
        for row, e in enumerate(encoded):
            kept = _truncated(e.ids, length)
            ids[row, : len(kept)] = kept
            mask[row, : len(kept)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._model({name: feeds[name] for name in self._inputs})[self._model.outputs[0]]
        hidden = np.asarray(hidden, dtype=np.float32)
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            weights = mask[:, :, None].astype(np.float32)
            vectors = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _truncated(ids: list[int], length: int) -> list[int]:
    """`ids` cut to `length` keeping the closing special token, as the tokenizer's own truncation does."""
    return ids if len(ids) <= length else [*ids[: length - 1], ids[-1]]


def _pad_token(folder: Path) -> str | None:
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if path.exists():
            pad = json.loads(path.read_text(encoding="utf-8")).get("pad_token")
            if isinstance(pad, dict):
                pad = pad.get("content")
            if pad:
                return pad
    return None


def _hub_snapshot(model_id: str) -> tuple[Path, str] | None:
    """The cached snapshot folder of a hub model and its commit, read from the Hugging Face cache's layout
    (importing huggingface_hub costs a second), or None."""
    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub"
    )
    repo = Path(home) / f"models--{model_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return None
    commit = ref.read_text(encoding="utf-8").strip()
    snapshot = repo / "snapshots" / commit
    return (snapshot, commit) if snapshot.is_dir() else None


def _pooling(folder: Path) -> str | None:
    """'cls' or 'mean' when the model is a plain Transformer → Pooling (→ Normalize) pipeline; else None."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        types = [m["type"] for m in modules]
        if not all(t.startswith("sentence_transformers.") for t in types):
            return None
        if [t.rsplit(".", 1)[1] for t in types] not in [list(p) for p in PLAIN_MODULES]:
            return None
        settings = folder / "config_sentence_transformers.json"
        if settings.exists() and json.loads(settings.read_text(encoding="utf-8")).get("default_prompt_name"):
            return None
        pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    if "pooling_mode" in pooling:  # sentence-transformers >= 5.7: "pooling_mode": "cls"
        mode = pooling["pooling_mode"]
        modes = [mode] if isinstance(mode, str) else list(mode)
    else:  # earlier: one flag per mode
        names = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}
        modes = [names.get(k, k) for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    return modes[0] if len(modes) == 1 and modes[0] in ("cls", "mean") else None


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _max_seq_length(folder: Path) -> int | None:
    """The token limit sentence-transformers applies: its config's, else the smaller of the tokenizer's and the
    model's position limits (as its Transformer module computes it)."""
    stated = _read(folder / "sentence_bert_config.json").get("max_seq_length")
    if stated:
        return int(stated)
    tokenizer = _read(folder / "tokenizer_config.json").get("model_max_length")
    positions = _read(folder / "config.json").get("max_position_embeddings")
    return int(min(tokenizer, positions)) if tokenizer and positions else None


@dataclass(frozen=True)
class LeanPlan:
    """What a `QueryEncoder` is built from, found without importing OpenVINO or the tokenizer: the model's
    folder, its OpenVINO export, the `EncoderInfo` it will report, its pooling and inference precision."""

    folder: Path
    xml: Path
    info: EncoderInfo
    pooling: str
    hint: str

    def build(self) -> QueryEncoder:
        return QueryEncoder(self.folder, self.xml, self.info, self.pooling, self.hint)


def lean_plan(model_id: str, backend: str, precision: str) -> LeanPlan | None:
    """How to run `model_id` as `backend precision` with a `QueryEncoder`, when its OpenVINO export exists and its
    pipeline is one this module reproduces; else None."""
    if backend != "openvino" or precision not in ("fp32", "bf16"):
        return None
    local = Path(model_id).expanduser()
    if local.exists():
        source, revision, key, own = local, None, str(local.resolve()), True
    else:
        found = _hub_snapshot(model_id)
        if found is None:
            return None
        source, revision = found
        key, own = f"{model_id}@{revision}", False
    pooling = _pooling(source)
    if pooling is None or not (source / "tokenizer.json").exists():
        return None
    max_seq_length = _max_seq_length(source)
    export = _export_folder(source, key, own=own)
    xml = export / exported_file(backend, precision)
    if not max_seq_length or not xml.exists():
        return None
    revision = revision or _local_revision(local)
    dim = json.loads((source / "config.json").read_text(encoding="utf-8")).get("hidden_size")
    if not dim:
        return None
    resolved = str(local.resolve()) if local.exists() else model_id
    variant = exported_file(backend, precision)
    info = EncoderInfo(resolved, revision, int(dim), int(max_seq_length), "cpu", precision, backend, variant)
    return LeanPlan(source, xml, info, pooling, {"fp32": "f32", "bf16": "bf16"}[precision])


def lean_encoder(model_id: str, backend: str, precision: str) -> QueryEncoder | None:
    """A `QueryEncoder` for `model_id` run as `backend precision` (see `lean_plan`), or None."""
    plan = lean_plan(model_id, backend, precision)
    return None if plan is None else plan.build()


def use_encoder_daemon() -> None:
    """Let this process's query encoders, from now on, come from the per-user daemon (`encoder_daemon`): what
    `legalsearch ask` asks, one question per process. The Python API and `serve` keep their model in-process and
    never call it."""
    global _daemon_wanted
    _daemon_wanted = True


_daemon_wanted = False


def load_query_encoder(model_id: str, device: str | None = None, *, backend=None, precision=None, match=None):
    """The encoder `LegalSearch` answers queries with: the lean OpenVINO one where it applies (on the CPU, for the
    runtime the index was built with) — served by the encoder daemon after `use_encoder_daemon()` unless it is
    turned off — else `embedding.load_encoder`."""
    if device in (None, "cpu") and match is not None and backend is None and precision is None:
        from .embedding import query_runtime

        lean_backend, lean_precision = resolve_runtime(*query_runtime(match, "cpu"), "cpu")
        if device == "cpu" or not _cuda_visible():
            try:
                plan = lean_plan(model_id, lean_backend, lean_precision)
                encoder = None if plan is None else _lean(plan)
            except Exception:  # anything it cannot read: sentence-transformers will say what is wrong
                encoder = None
            if encoder is not None:
                return encoder
    return load_encoder(model_id, device, backend=backend, precision=precision, match=match)


def _lean(plan: LeanPlan):
    """The daemon's encoder for `plan` where this process may use it (it falls back to `plan.build()` itself
    whenever the daemon cannot answer), else the in-process one."""
    if _daemon_wanted:
        try:
            from .encoder_daemon import daemon_encoder
        except ImportError:  # no Unix file locks here (Windows)
            return plan.build()
        served = daemon_encoder(plan)
        if served is not None:
            return served
    return plan.build()


def _cuda_visible() -> bool:
    """Whether a CUDA device may be present (then the index's runtime on it is torch's, not OpenVINO's), known
    without importing torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()
