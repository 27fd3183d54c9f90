"""Embedding spread over a Ray cluster (Ray Data), for corpora one machine cannot embed in reasonable time.

The driver parses and chunks as usual (`indexing.build`); only the texts to embed go to Ray: a dataset of
(content hash, text) rows runs through `map_batches` on a pool of actors that each load the model once (on a GPU
each when asked), and the vectors stream back to the driver, which writes them as Parquet shards beside the index
before assembling the usual index folder. The shards are keyed by content hash and by the model and runtime that
made them, so a run that is interrupted resumes without re-embedding a shard it wrote; they are deleted once the
index is in place. Ray restarts an actor that dies and retries its batches.

Ray is optional: `pip install 'legalsearch[ray]'`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from .embedding import Encoder, load_encoder, resolve_runtime
from .errors import LegalSearchError

SHARD_ROWS = 4096  # vectors per Parquet shard: the unit of resumption


def _require_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise LegalSearchError(
            "--distributed ray needs Ray: pip install 'legalsearch[ray]' (Ray Data and PyArrow)"
        ) from None
    return ray


class EmbedActor:
    """One Ray actor: loads the model once, then embeds the batches it is given."""

    def __init__(self, model_id: str, device: str, backend: str, precision: str, batch_size: int) -> None:
        self.encoder = load_encoder(model_id, device, backend=backend, precision=precision)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        vectors = self.encoder.encode(list(batch["text"]), batch_size=self.batch_size)
        return {"content_hash": batch["content_hash"], "vector": vectors}


class RayEncoder:
    """An `Encoder` whose `encode` runs on a Ray cluster; tokenising (for chunking) stays on the driver.

    `local` is a model loaded on the driver for its tokenizer and metadata; the vectors come from `workers`
    actors running `backend precision` on `gpus_per_worker` GPUs each (CPUs when 0).
    """

    def __init__(
        self,
        local: Encoder,
        shards: Path,
        *,
        address: str | None = None,
        workers: int = 2,
        gpus_per_worker: float = 0,
        backend: str | None = None,
        precision: str | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.local = local
        self.workers = workers
        self.gpus = gpus_per_worker
        self.device = "cuda" if gpus_per_worker > 0 else "cpu"
        self.backend, self.precision = resolve_runtime(backend, precision, self.device)
        # the workers' runtime; an onnx/openvino export is each worker's own, so no file is recorded
        self.info = replace(
            local.info, device=f"ray:{self.device}", backend=self.backend, precision=self.precision, variant=None
        )
        key = f"{local.info.model_id}|{local.info.revision}|{self.backend}|{self.precision}"
        self.shards = shards / hashlib.sha256(key.encode()).hexdigest()[:16]
        self.address = address
        self.notify = notify

    @property
    def dim(self) -> int:
        return self.local.dim

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.local.count_tokens(texts)

    # --- shards ---------------------------------------------------------------------------------------
    def written(self) -> dict[str, np.ndarray]:
        """The vectors already in this model's shards, by content hash."""
        import pyarrow.parquet as pq

        found: dict[str, np.ndarray] = {}
        for path in sorted(self.shards.glob("shard-*.parquet")):
            table = pq.read_table(path)
            vectors = np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32)
            vectors = vectors.reshape(len(table), self.dim)
            for digest, vector in zip(table.column("content_hash").to_pylist(), vectors, strict=True):
                found[digest] = vector
        return found

    def _write_shard(self, hashes: list[str], vectors: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = hashlib.sha256("".join(hashes).encode()).hexdigest()[:16]
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        table = pa.table(
            {"content_hash": pa.array(hashes), "vector": pa.FixedSizeListArray.from_arrays(flat, self.dim)}
        )
        partial = self.shards / f".shard-{name}.parquet.partial"
        pq.write_table(table, partial)
        os.replace(partial, self.shards / f"shard-{name}.parquet")  # a shard is whole or absent

    def discard(self) -> None:
        """Delete the shards (once the index that holds their vectors is in place)."""
        shutil.rmtree(self.shards, ignore_errors=True)
        parent = self.shards.parent
        if parent.exists() and not any(parent.iterdir()):
            parent.rmdir()

    # --- embedding ------------------------------------------------------------------------------------
    def encode(
        self, texts: Sequence[str], batch_size: int = 16, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        hashes = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        self.shards.mkdir(parents=True, exist_ok=True)
        done = self.written()
        todo: dict[str, str] = {}
        for digest, text in zip(hashes, texts, strict=True):
            if digest not in done:
                todo.setdefault(digest, text)
        counts = Counter(hashes)  # texts that occur twice are embedded once and count twice
        already = sum(n for digest, n in counts.items() if digest in done)
        if progress is not None and already:
            progress(already)
        if done and self.notify is not None:
            self.notify(f"resuming: {len(done)} vectors already in {self.shards}; {len(todo)} left to embed")
        if todo:
            self._run(todo, batch_size, done, progress, counts)
        return np.stack([done[d] for d in hashes]) if hashes else np.zeros((0, self.dim), dtype=np.float32)

    def _run(self, todo: dict[str, str], batch_size, done, progress, counts: Counter) -> None:
        ray = _require_ray()
        started_here = not ray.is_initialized()
        if started_here:
            kwargs: dict = {"address": self.address} if self.address else {"num_cpus": max(self.workers, 1)}
            kwargs.update(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
            if self.address is None:
                # workers import this package and the model by path: the driver's environment is theirs
                wanted = ("HF_", "LEGALSEARCH_", "TRANSFORMERS_")
                kwargs["runtime_env"] = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith(wanted)}}
            ray.init(**kwargs)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the caller shows progress; Ray's own bars would interleave
        context.print_on_execution_start = False
        try:
            rows = [{"content_hash": d, "text": t} for d, t in todo.items()]
            dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // batch_size, 256)))
            embedded = dataset.map_batches(
                EmbedActor,
                fn_constructor_kwargs={
                    "model_id": self.local.info.model_id,
                    "device": self.device,
                    "backend": self.backend,
                    "precision": self.precision,
                    "batch_size": batch_size,
                },
                batch_size=batch_size * 4,
                compute=ray.data.ActorPoolStrategy(size=self.workers),
                num_gpus=self.gpus or None,
                num_cpus=None if self.gpus else 1,
            )  # fmt: skip  (Ray Data restarts a dead actor and retries its batches: max_restarts=-1 by default)
            for batch in embedded.iter_batches(batch_size=SHARD_ROWS, batch_format="numpy"):
                got = [str(h) for h in batch["content_hash"]]
                vectors = np.asarray(np.stack(batch["vector"]), dtype=np.float32)
                self._write_shard(got, vectors)
                for digest, vector in zip(got, vectors, strict=True):
                    done[digest] = vector
                if progress is not None:
                    progress(sum(counts[digest] for digest in got))
        finally:
            if started_here:
                ray.shutdown()


def ray_encoder(
    model_id: str,
    index: Path,
    *,
    address: str | None,
    workers: int,
    gpus_per_worker: float,
    backend: str | None,
    precision: str | None,
    match: dict | None,
    notify: Callable[[str], None] | None,
) -> RayEncoder:
    """A `RayEncoder` for `model_id` whose shards live beside `index` (`.<name>.shards/`)."""
    _require_ray()
    if workers < 1:
        raise LegalSearchError(f"--workers {workers}: give at least 1")
    if match is not None and backend is None and precision is None:
        from .embedding import query_runtime

        backend, precision = query_runtime(match, "cuda" if gpus_per_worker > 0 else "cpu")
    local = load_encoder(model_id, "cpu", notify, backend="torch", precision="fp32")
    shards = index.parent / f".{index.name}.shards"
    return RayEncoder(
        local, shards, address=address, workers=workers, gpus_per_worker=gpus_per_worker, backend=backend,
        precision=precision, notify=notify,
    )  # fmt: skip
