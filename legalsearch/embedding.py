"""Sentence embeddings. The only module that runs sentence-transformers (and torch); `testing` only builds
random models with it, and `distributed` calls `load_encoder` inside its Ray actors.

Every text is encoded once at the model's full dimension and L2-normalised; a Matryoshka dim is the prefix of
that vector, re-normalised (`matryoshka`), so cosine similarity stays an inner product at every dim.

Backends: torch (fp32; fp16/bf16), and sentence-transformers' ONNX Runtime (fp32, dynamic int8) and OpenVINO
(fp32, bf16, int8 weights) backends through Optimum. An onnx/openvino model is exported once into `onnx/` or
`openvino/` beside the model (or a linked mirror under `models_home()` for hub downloads and read-only
folders) and loaded from there afterwards. Float runtimes give vectors that agree to rounding and can share an
index; an int8 model is its own quantisation, so an index embedded with one is queried with the same.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ModelError
from .matryoshka import FUNNEL_DIMS, dims_for, matryoshka  # noqa: F401 (re-exported)
from .quiet import quiet_third_party

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "dariolopez/bge-m3-es-legal-tmp-3"
# Dims the legal model was trained at (MatryoshkaLoss); other models get the ones that fit them.
MATRYOSHKA_DIMS = (1024, 768, 512, 256, 128, 64)


# Backends and the precisions each runs (sentence-transformers' backends; onnx/openvino via optimum).
PRECISIONS = {"torch": ("fp32", "fp16", "bf16"), "onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
BACKENDS = tuple(PRECISIONS)
FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")  # the same weights: their vectors agree to rounding
# What runs on a CPU when nothing is asked, chosen with bench/backends.py (README, "Faster embedding"): 2.4× torch
# fp32 on a model of the legal model's size, 0.990 top-10 overlap with fp32 on the dev set (all-MiniLM-L6-v2), and
# float, so its indexes mix with fp32 and GPU fp16 vectors. int8 was 1.1× faster still, at 0.957 overlap.
CPU_DEFAULT = ("openvino", "bf16")
GPU_DEFAULT = ("torch", "fp16")
EXPORT_FOLDERS = ("onnx", "openvino")  # written beside a model by `_ensure_exported`; not part of its fingerprint
# What an export made for another runtime than its own is (`_ensure_exported` says so in its one line)
EXPORT_STEPS = {
    "openvino bf16": " (an fp32 OpenVINO model, run in bf16)",
    "onnx int8": " (first in fp32, then quantised)",
}


def default_model() -> str:
    return os.environ.get("LEGALSEARCH_MODEL", DEFAULT_MODEL)


def same_model(recorded: dict, model_id: str) -> bool:
    """Whether `model_id` (a hub id or folder) names the model an index was built with."""
    if model_id == recorded["id"]:
        return True
    folder = Path(model_id).expanduser()
    return folder.exists() and str(folder.resolve()) == recorded["id"]


def _local_revision(folder: Path) -> str:
    """A fingerprint of a local model folder: its small config files' contents and its weights' sizes."""
    digest = hashlib.sha256()
    files = (p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] not in EXPORT_FOLDERS)
    for path in sorted(files):
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
    backend: str = "torch"
    variant: str | None = None  # the exported file an onnx/openvino model runs, e.g. onnx/model_qint8_avx2.onnx

    @property
    def runtime(self) -> str:
        return f"{self.backend} {self.precision}"


class Encoder:
    """A loaded sentence-transformers model: `encode()` gives normalised float32 vectors at full dim."""

    def __init__(
        self,
        model: SentenceTransformer,
        model_id: str,
        revision: str | None,
        precision: str,
        backend: str = "torch",
        variant: str | None = None,
    ) -> None:
        self.model = model
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else None
        dim = dim or model.get_sentence_embedding_dimension()
        device = str(model.device)
        self.info = EncoderInfo(
            model_id, revision, int(dim), int(model.max_seq_length), device, precision, backend, variant
        )
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes in the model, special tokens included, before truncation. Safe to call while
        another thread encodes: it counts with its own copy of the tokenizer (a fast tokenizer is not shared
        across threads: "Already borrowed")."""
        if not texts:
            return []
        counter = self.__dict__.get("_counter")
        if counter is None:
            import copy

            counter = self.__dict__["_counter"] = copy.deepcopy(self.model.tokenizer)
        encoded = counter(list(texts), add_special_tokens=True, truncation=False, verbose=False)
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
        with self._lock, quiet_third_party():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                vectors = self.model.encode(
                    [texts[i] for i in batch],
                    batch_size=batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
                vectors = vectors.astype(np.float32)  # half-precision outputs are unit length only to rounding
                vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
                out[batch] = vectors
                if progress is not None:
                    progress(len(batch))
        return out


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """One whole, readable line for why a third-party call failed: the error's first line when short; for a
    network error's nested message, its type, the system's reason and the host; else the words that fit, marked
    as cut."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    if len(line) <= limit:
        return line
    errno = re.search(r"\[Errno -?\d+\] ([^)\"'\\]+)", line)
    host = re.search(r"host=\\?'([\w.-]+)", line)
    if errno:
        return f"{type(exc).__name__}: {errno[1].strip()}" + (f" ({host[1]})" if host else "")
    return f"{type(exc).__name__}: {line[: limit - 30].rsplit(' ', 1)[0]} …"


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
        reason = short_reason(exc)
        raise ModelError(
            f"cannot load model from Hugging Face hub id {model_id!r}: not cached and the hub cannot be reached "
            f"or does not know it [{reason}]; {how}"
        ) from None
    size = sum(sibling.size or 0 for sibling in info.siblings or [])
    if notify is not None:
        notify(f"downloading {model_id} ({size / 1e9:.2f} GB) from the Hugging Face hub into its local cache")


def resolve_runtime(backend: str | None, precision: str | None, device: str) -> tuple[str, str]:
    """The (backend, precision) to run on `device`, from what was asked (None: the device's default)."""
    if backend is not None and backend not in PRECISIONS:
        raise ModelError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    known = {p for ps in PRECISIONS.values() for p in ps}
    if precision is not None and precision not in known:
        raise ModelError(f"unknown precision {precision!r}; choose one of {', '.join(sorted(known))}")
    on_gpu = device.startswith("cuda")
    default = GPU_DEFAULT if on_gpu else CPU_DEFAULT
    if backend is None:
        if precision is None or precision in PRECISIONS[default[0]]:
            backend = default[0]
        else:
            backend = next(b for b in BACKENDS if precision in PRECISIONS[b])  # e.g. int8 on a GPU: onnx
    if precision is None:  # a backend named alone runs the device default's precision if it is its, else fp32
        precision = default[1] if backend == default[0] else "fp32"
    if precision not in PRECISIONS[backend]:
        runs = ", ".join(f"{b} ({'/'.join(ps)})" for b, ps in PRECISIONS.items())
        raise ModelError(f"backend {backend} does not run {precision}; backends and their precisions: {runs}")
    if backend == "torch" and precision == "fp16" and not on_gpu:
        raise ModelError(
            "fp16 needs a CUDA device (--device cuda); on a CPU use fp32, bf16, or int8 with --backend onnx|openvino"
        )
    if backend != "torch" and on_gpu:
        raise ModelError(f"{backend} runs on the CPU here; on a GPU use --backend torch (fp16 or bf16)")
    return backend, precision


def recorded_runtime(recorded: dict) -> tuple[str, str]:
    """The backend and precision an index's model record says its vectors came from (torch fp32 for indexes
    written before runtimes were recorded)."""
    return recorded.get("backend", "torch"), recorded.get("precision", "fp32")


def runtime_compatible(recorded: dict, backend: str, precision: str, variant: str | None = None) -> bool:
    """Whether vectors made by `backend precision` can be mixed with those of an index recorded as `recorded`.

    Float precisions of the same weights agree to rounding, whatever runs them; an int8 model is its own
    quantisation of them, so only the same int8 export matches it.
    """
    theirs = recorded_runtime(recorded)
    if theirs[1] in FLOAT_PRECISIONS and precision in FLOAT_PRECISIONS:
        return True
    return theirs == (backend, precision) and (variant is None or recorded.get("variant") in (None, variant))


def check_runtime(recorded: dict, info: EncoderInfo, where: object) -> None:
    """Refuse an encoder whose vectors cannot be mixed with those of the index at `where` (see
    `runtime_compatible`), naming the runtime that can."""
    if not runtime_compatible(recorded, info.backend, info.precision, info.variant):
        raise _incompatible(recorded, info.runtime, where)


def _incompatible(recorded: dict, runtime: str, where: object) -> ModelError:
    backend, precision = recorded_runtime(recorded)
    return ModelError(
        f"{where} was embedded with {backend} {precision}; it cannot be mixed with or queried by {runtime} "
        f"vectors (an int8 model is its own quantisation of the weights): use --backend {backend} "
        f"--precision {precision}, or rebuild into another --index"
    )


def check_requested_runtime(recorded: dict, backend: str | None, precision: str | None, where: object) -> None:
    """Refuse, before any model is loaded, exported or quantised, a runtime asked for (`--backend`,
    `--precision`) whose vectors could not be mixed with those of the index at `where`."""
    if precision is None:
        return
    if backend is None:
        backend = next((b for b in (CPU_DEFAULT[0], *BACKENDS) if precision in PRECISIONS[b]), None)
        if backend is None:
            return  # resolve_runtime names the unknown precision
        if precision == "int8" and recorded_runtime(recorded)[1] == "int8":
            backend = recorded_runtime(recorded)[0]
    if not runtime_compatible(recorded, backend, precision):
        raise _incompatible(recorded, f"{backend} {precision}", where)


def query_runtime(recorded: dict, device: str) -> tuple[str, str]:
    """The backend and precision to embed queries of an index recorded as `recorded`, on `device`."""
    backend, precision = recorded_runtime(recorded)
    if precision in FLOAT_PRECISIONS:  # any float runtime matches: the index's own where the device runs it
        if device.startswith("cuda"):
            return GPU_DEFAULT
        return ("torch", "fp32") if precision == "fp16" else (backend, precision)
    return backend, precision


def _cpu_isa() -> str:
    """The instruction set that ONNX Runtime's dynamic int8 quantisation is tuned for on this CPU."""
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        flags = ""
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def exported_file(backend: str, precision: str) -> str | None:
    """Where, inside a model folder, the exported model of `backend precision` lives (None for torch)."""
    if backend == "onnx":
        return "onnx/model.onnx" if precision == "fp32" else f"onnx/model_qint8_{_cpu_isa()}.onnx"
    if backend == "openvino":  # bf16 runs the fp32 export with bf16 inference
        return "openvino/openvino_model_qint8.xml" if precision == "int8" else "openvino/openvino_model.xml"
    return None


def models_home() -> Path:
    """Where exports of models whose own folder cannot take them (hub downloads, read-only folders) go."""
    return Path(os.environ.get("LEGALSEARCH_MODELS", Path.home() / ".cache" / "legalsearch" / "models"))


def _export_folder(folder: Path, key: str, own: bool) -> Path:
    """`folder` itself when it is the user's and writable (exports sit beside the model); else (a hub download,
    a read-only folder) a mirror of it under `models_home()` whose files link to the originals."""
    installed = {"site-packages", "dist-packages"} & set(folder.resolve().parts)  # never write into a package
    if own and not installed and os.access(folder, os.W_OK):
        return folder
    mirror = models_home() / re.sub(r"[^A-Za-z0-9_.-]+", "--", key).strip("-")
    mirror.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        link = mirror / entry.name
        if entry.name not in EXPORT_FOLDERS and not link.exists():
            link.symlink_to(entry.resolve())
    return mirror


def _ensure_exported(
    folder: Path, backend: str, precision: str, notify: Callable[[str], None] | None, runtime: str | None = None
) -> str:
    """Export (and quantise) the model in `folder` for `backend precision` unless already there; return the
    file's path inside `folder`. Written to a temporary folder and moved into place, so an interrupted export
    leaves nothing half-written, and an existing export is never redone. `runtime` is what the export is for
    (openvino bf16 runs the fp32 export; onnx int8 quantises it), named in the one line it prints."""
    from sentence_transformers import SentenceTransformer

    runtime = runtime or f"{backend} {precision}"
    relative = exported_file(backend, precision)
    assert relative is not None
    if (folder / relative).exists():
        return relative
    if backend == "openvino" and precision == "bf16":
        return _ensure_exported(folder, backend, "fp32", notify, runtime)
    if precision == "int8" and backend == "onnx":
        base = _ensure_exported(folder, backend, "fp32", notify, runtime)
    else:
        base = None
    if notify is not None:
        step = "" if f"{backend} {precision}" == runtime else EXPORT_STEPS.get(runtime, f" ({backend} {precision})")
        notify(f"exporting the model for {runtime} once{step}; cached as {folder / relative}")
    for name in ("sentence_transformers.backend.utils", "nncf"):  # we do save; NNCF prints a table per export
        logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=folder) as scratch:
        if base is not None:
            from sentence_transformers.backend import export_dynamic_quantized_onnx_model

            model = SentenceTransformer(str(folder), backend="onnx", device="cpu", model_kwargs={"file_name": base})
            export_dynamic_quantized_onnx_model(model, _cpu_isa(), scratch)
        else:
            kwargs: dict = {"export": True}
            if precision == "int8":  # openvino: int8 weights (NNCF weight compression), no calibration data
                kwargs["quantization_config"] = {"bits": 8, "weight_only": True}
            model = SentenceTransformer(str(folder), backend=backend, device="cpu", model_kwargs=kwargs)
            model.transformers_model.save_pretrained(scratch)
            if backend == "openvino" and precision == "int8":
                produced = Path(scratch, "openvino")
                for suffix in (".bin", ".xml"):
                    (produced / f"openvino_model{suffix}").rename(produced / f"openvino_model_qint8{suffix}")
        produced = Path(scratch, relative).parent
        target = (folder / relative).parent
        target.mkdir(exist_ok=True)
        main = Path(relative).name
        for file in sorted(produced.iterdir(), key=lambda p: p.name == main):  # the file we look for goes last
            if (file.is_file() and not (target / file.name).exists()) or file.name == main:
                shutil.move(str(file), target / file.name)
    return relative


def load_encoder(*args, **kwargs) -> Encoder:
    """`_load_encoder`, with third-party warnings and log lines kept from the user (`quiet_third_party`)."""
    with quiet_third_party():
        return _load_encoder(*args, **kwargs)


def _load_encoder(
    model_id: str | None = None,
    device: str | None = None,
    notify: Callable[[str], None] | None = None,
    *,
    backend: str | None = None,
    precision: str | None = None,
    match: dict | None = None,
) -> Encoder:
    """Load a sentence-transformers model from a local folder or the Hugging Face hub.

    `device` None picks CUDA when available, else the CPU. `backend` (torch, onnx, openvino) and `precision`
    (fp32, fp16, bf16, int8) default to the device's best (`CPU_DEFAULT`, `GPU_DEFAULT`); an onnx or openvino
    model is exported (and quantised) once and cached beside the model. A hub model that is not cached is
    downloaded after `notify` says what and how big. Errors name what was tried and how to point at a local copy.
    `match`, the model record of an index, makes its runtime the default when neither is asked for.
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
    if match is not None and backend is None and precision is None:  # the runtime of the index to match
        backend, precision = query_runtime(match, device)
    backend, precision = resolve_runtime(backend, precision, device)
    local = Path(model_id).expanduser()
    is_local = local.exists()
    looks_like_path = model_id.startswith((".", "/", "~")) or model_id.count("/") > 1 or "\\" in model_id
    if not is_local and looks_like_path:
        raise ModelError(f"no model folder at {local}; pass an existing folder or a Hugging Face hub id (owner/name)")
    if is_local and not (local / "modules.json").exists() and not (local / "config.json").exists():
        raise ModelError(f"model folder {local} holds no sentence-transformers model (no modules.json or config.json)")
    if not is_local:
        _ensure_downloadable(model_id, notify)
    where = f"local folder {local}" if is_local else f"Hugging Face hub id {model_id!r}"
    variant = None
    if backend != "torch":
        _check_backend_installed(backend)
    try:
        if backend == "torch":
            model = SentenceTransformer(str(local) if is_local else model_id, device=device)
            if precision != "fp32":  # weights cast once; every forward pass then runs in half precision
                model.to({"fp16": torch.float16, "bf16": torch.bfloat16}[precision])
            revision = _local_revision(local) if is_local else _hub_revision(model)
        else:
            if is_local:
                folder, revision = _export_folder(local, str(local.resolve()), own=True), _local_revision(local)
            else:
                from huggingface_hub import snapshot_download

                snapshot = Path(snapshot_download(model_id))
                revision = snapshot.name  # the commit
                folder = _export_folder(snapshot, f"{model_id}@{revision}", own=False)
            variant = _ensure_exported(folder, backend, precision, notify)
            kwargs = {"file_name": variant}
            if backend == "openvino":  # OpenVINO runs "fp32" models in bf16 on CPUs that have it, unless told
                hint = {"fp32": "f32", "bf16": "bf16"}.get(precision)
                kwargs["ov_config"] = {"INFERENCE_PRECISION_HINT": hint} if hint else {}
            with quiet_third_party():  # again: optimum's exporter turns logging back on when it is done
                model = SentenceTransformer(str(folder), device=device, backend=backend, model_kwargs=kwargs)
    except ModelError:
        raise
    except Exception as exc:
        hint = (
            "it is not a sentence-transformers model folder"
            if is_local
            else "download failed or the files are not a sentence-transformers model; retry, or pass --model DIR"
        )
        if backend != "torch":
            hint = f"it could not be exported to or run with {backend} {precision}; try --backend torch"
        raise ModelError(f"cannot load model from {where}: {hint} [{short_reason(exc)}]") from None
    resolved_id = str(local.resolve()) if is_local else model_id
    return Encoder(model, resolved_id, revision, precision, backend, variant)


def load_cross_encoder(model_id: str, device: str | None = None, notify: Callable[[str], None] | None = None):
    """A sentence-transformers `CrossEncoder` (a reranker) from a local folder or the Hugging Face hub, loaded
    like the embedding model: a hub model not cached is downloaded after saying what and how big."""
    local = Path(model_id).expanduser()
    if not local.exists():
        if model_id.startswith((".", "/", "~")) or model_id.count("/") > 1:
            raise ModelError(f"no reranker folder at {local}; pass an existing folder or a Hugging Face hub id")
        _ensure_downloadable(model_id, notify)
    try:
        import torch
        from sentence_transformers import CrossEncoder

        with quiet_third_party():
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            return CrossEncoder(str(local) if local.exists() else model_id, device=device)
    except Exception as exc:
        raise ModelError(
            f"cannot load reranker {model_id}: not a sentence-transformers CrossEncoder [{short_reason(exc)}]"
        ) from None


def _check_backend_installed(backend: str) -> None:
    import importlib.util

    needs = {"onnx": ("onnxruntime", "optimum.onnxruntime"), "openvino": ("openvino", "optimum.intel")}[backend]
    for name in needs:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise ModelError(
                f"backend {backend} needs {needs[0]} and optimum, which are not installed: "
                f"pip install 'legalsearch[{backend}]' (or use --backend torch)"
            )
