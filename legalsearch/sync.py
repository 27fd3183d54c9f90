"""`legalsearch sync`: mirror the BOE's catalogue of consolidated legislation into an index, and keep it current.

A run: list the catalogue (`GET {api}/legislacion-consolidada`, pages of up to 10,000 asked in id order) — the
whole of it on the first run, every `FULL_EVERY` days, with `--full` and whenever the selection changed, otherwise
the window of norms updated since the start of the last complete run (minus `WINDOW_OVERLAP` days); select
(ámbito, rango, a list of ids, in force only); compare with what the index recorded of each norm (`norms`: its
`fecha_actualizacion` and state); fetch, one request at a time at `--rate`, exactly the norms that are new,
changed, or left to retry; index them in batches (`BATCH_NORMS` norms or about `BATCH_MINUTES` of work each, each
an ordinary `indexing.build` commit, every norm's state recorded after it); remove what the catalogue no longer
has or the selection no longer wants; record the run (`syncs`).

Never trusts a bad listing (`list_catalogue`): every answer's envelope is checked (`status.code`, the `data`
type), pages overlap by one item and must meet in id order (a page that starts past the last one is asked again
from further back), the end is an answer with nothing new, asked twice on a full listing, and a listing that
was not in id order, lost items (no `identificador`) or failed is never used to remove anything. A norm missing
from a sound full listing is removed only when its own endpoint answers 404 too, and one run removes at most
`REMOVAL_SHARE` of the index (at least `REMOVAL_FLOOR` norms) unless `allow_removals`; items missing a field the
selection needs are decided on the norm's own metadatos. A 404 for a norm the catalogue lists is an answer to
try again next run, not a removal; an answer with an empty text is a failure, not a law.

Resumable: fetched texts are cached whole (written and renamed) and reused while their `fecha_actualizacion`
matches the catalogue's; each batch is committed and recorded before the next, and the index skips sources
whose bytes it holds, so a killed run, run again, fetches and embeds only what it had not finished (at most one
batch again). After `BREAKER` failed norms in a row (the API is down) the run stops, records the norms it did
not try as pending (asked again by the next run, window or not) and exits 1.

With `--diario`, the daily sumarios since `--since` (or the last day read) are read too: each new norm of
section I (disposiciones generales) that passes the selection is fetched as published in the daily BOE and
indexed as original text, not consolidated, until the consolidated version appears in the catalogue and
replaces it. Only days read are marked read: a failed day, and today while it has no sumario yet, are read
again next run.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import indexing, store
from .embedding import load_encoder
from .engines import StoreSpec, open_writer
from .engines.base import Writer
from .errors import FetchError, ParseError, UsageError
from .folding import fold
from .sources import read_id_list
from .sources.fetch import BOEClient, NotFound
from .sync_listing import Listing, list_catalogue

AMBITOS = {"estatal": ("1",), "autonomico": ("2",), "todo": ("1", "2")}
FULL_EVERY = 7  # days between full listings of the catalogue (a window can miss a norm; a full listing cannot)
PAGE = 10_000  # the API's largest page
WINDOW_OVERLAP = 1  # days a window listing reaches back before the start of the last complete run
REMOVAL_SHARE = 0.05  # the most of the index one run may remove without --allow-removals …
REMOVAL_FLOOR = 20  # … or this many norms, whichever is more
BREAKER = 5  # failed norms in a row that stop a run (the API is down)
BATCH_NORMS = 200  # the most norms one commit holds …
BATCH_MINUTES = 10.0  # … and about how long one batch should take (fetch and embed), sized from the last one
FIRST_BATCH = 20  # the first batch of a run, before its pace is known
# For estimates: the real catalogue is ~12,400 norms and ~0.5 M chunks; a model of the legal model's size embeds
# 2.42 chunks/s on a 2-core CPU (openvino bf16, 256 tokens) and 707/s on one H200 (torch fp16, 512 tokens), as
# measured with bench/backends.py and bench/gpu.py (README).
CHUNKS_PER_NORM = 40
CPU_CHUNKS_PER_S = 2.42
GPU_CHUNKS_PER_S = 707.0
RETRIED = ("failed", "missing", "pending")  # states fetched again on the next run, listed or not
IN_INDEX = ("indexed", "diario")


@dataclass
class Selection:
    """Which norms of the catalogue the index mirrors."""

    ambito: str = "estatal"
    rangos: tuple[str, ...] = ()
    ids: frozenset[str] | None = None
    vigentes: bool = False

    def check(self) -> None:
        if self.ambito not in AMBITOS:
            raise UsageError(f"unknown --ambito {self.ambito!r}; choose one of {', '.join(AMBITOS)}")

    def accepts(self, item: dict) -> bool | None:
        """Whether the index wants this catalogue item; None when a field the answer needs is missing."""
        if self.ids is not None:
            if item.get("identificador") not in self.ids:
                return False
        elif not isinstance(item.get("ambito"), dict | str) or not _code(item.get("ambito")):
            return None
        elif _code(item.get("ambito")) not in AMBITOS[self.ambito]:
            return False
        if self.rangos:
            rango = item.get("rango")
            if not rango:
                return None
            names = {fold(str(rango.get("texto", ""))), str(rango.get("codigo", ""))} if isinstance(rango, dict) \
                else {fold(str(rango))}  # fmt: skip
            if not names & {fold(r) for r in self.rangos}:
                return False
        if self.vigentes:
            if item.get("vigencia_agotada") not in ("S", "N"):
                return None
            return item["vigencia_agotada"] == "N"
        return True

    def record(self) -> dict:
        """What the run log keeps of the selection (the ids as a digest): a different one re-plans in full."""
        ids = None if self.ids is None else hashlib.sha256("\n".join(sorted(self.ids)).encode()).hexdigest()[:16]
        return {"ambito": self.ambito, "rangos": sorted(fold(r) for r in self.rangos), "ids": ids,
                "vigentes": self.vigentes}  # fmt: skip


def read_ids(path: Path) -> frozenset[str]:
    """The ids of an `--ids` file; UsageError (one line, exit 2) when it is missing or a line is not an id."""
    if not Path(path).is_file():
        raise UsageError(f"{path}: no such file; --ids takes a file of BOE ids, one per line")
    try:
        return frozenset(read_id_list(Path(path)))
    except ParseError as exc:
        raise UsageError(f"--ids {exc}; fix that line (one BOE id a line, # for comments)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--ids {path}: cannot read it ({exc})") from None


@dataclass
class SyncReport:
    index: str
    started: str = ""  # when the run began (UTC): the next window starts from it
    selection: dict = field(default_factory=dict)
    listing: str = "full"  # or "window since YYYYMMDD"
    listed: int = 0
    selected: int = 0
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # updated, or retried (failed, 404, pending before)
    derogated: list[str] = field(default_factory=list)  # fetched and derogated, annulled or no longer in force
    removed: list[str] = field(default_factory=list)  # dropped from the index: gone, no longer selected
    gone: list[str] = field(default_factory=list)  # no longer in the catalogue, nor at its own endpoint (404)
    kept: list[str] = field(default_factory=list)  # missing from the listing but still at the API: kept
    missing: list[str] = field(default_factory=list)  # listed, but the text answers 404: asked again next run
    failed: dict[str, str] = field(default_factory=dict)  # boe_id → why
    pending: list[str] = field(default_factory=list)  # not tried (the run stopped): first in line next run
    unknown_ids: list[str] = field(default_factory=list)  # ids of --ids the catalogue does not list
    doubts: list[str] = field(default_factory=list)  # why the listing was not used to remove anything
    refused: str | None = None  # removals over the limit, not made
    stopped: str | None = None  # the run stopped early (the API is down)
    listing_error: str | None = None  # the catalogue could not be listed: nothing done
    diario: list[str] = field(default_factory=list)  # indexed from the daily BOE (original text)
    diario_until: str | None = None  # the last day of sumarios read, every day before it read too
    sources: dict[str, str] = field(default_factory=dict)  # boe_id → the cached text indexed
    unchanged: int = 0
    fetched: int = 0
    requests: int = 0
    throttled: int = 0  # answers 429
    batches: int = 0  # commits of fetched norms
    embedded: int = 0
    chunks: int = 0
    commit: int | None = None
    seconds: float = 0.0
    dry_run: bool = False
    estimate: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["sources"]
        return data

    @property
    def complete(self) -> bool:
        """The run listed the catalogue and tried every norm it planned (the next window may start from it)."""
        return self.listing_error is None and self.stopped is None and not self.dry_run

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.stopped or self.refused or self.listing_error else 0

    def problems(self) -> list[str]:
        """One line for each thing that went wrong (the run stopping is one line, not one per norm)."""
        if self.listing_error:
            return [f"{self.listing_error}: nothing was fetched or removed; run sync again later"]
        if self.stopped:
            lines = [self.stopped]
        else:
            lines = [f"{boe_id}: {why}" if not why.startswith(boe_id) else why for boe_id, why in self.failed.items()]
        return lines + ([self.refused] if self.refused else [])


@dataclass
class SyncOptions:
    selection: Selection = field(default_factory=Selection)
    rate: float = 2.0
    full: bool = False
    dry_run: bool = False
    diario: bool = False
    since: str | None = None  # YYYY-MM-DD: the first day of sumarios to read
    page: int = PAGE
    build: indexing.BuildOptions = field(default_factory=indexing.BuildOptions)
    allow_removals: bool = False  # remove more than the limit (REMOVAL_SHARE, REMOVAL_FLOOR) in one run
    batch_norms: int = BATCH_NORMS
    batch_minutes: float = BATCH_MINUTES


def sync(
    index: Path | str | StoreSpec,
    options: SyncOptions,
    client: BOEClient,
    *,
    encoder=None,
    progress: Callable[[str, int, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> SyncReport:
    """One sync run of `index` (an index folder or a store address: `engines.StoreSpec`) against the API `client`
    talks to (see the module's docstring). Everything is written through one `Writer` held for the whole run."""
    from .pull import refuse_if_following

    refuse_if_following(index)  # an index that follows a publisher is written by `pull` only (or detached)
    options.selection.check()
    client.check()
    if options.rate <= 0:
        raise UsageError(f"--rate must be above 0 requests per second (got {options.rate})")
    client.delay = 1.0 / options.rate
    started = time.perf_counter()
    spec = index if isinstance(index, StoreSpec) else StoreSpec.parse(index)
    report = SyncReport(spec.label, started=store.now(), selection=options.selection.record(),
                        dry_run=options.dry_run)  # fmt: skip
    tick = progress or (lambda stage, done, total: None)
    say = notify or (lambda message: None)
    with open_writer(spec) as writer:
        index = _Store(spec, writer)
        state = _read_state(writer)
        since = _window_start(state, options.full, report.selection)
        report.listing = "full" if since is None else f"window since {since}"
        try:
            listing = list_catalogue(client, options.page, since, tick, confirm_end=since is None)
        except FetchError as exc:
            report.listing_error = f"listing the catalogue failed ({exc})"
            return _finish(index, report, client, started)
        held = sum(1 for r in state["norms"].values() if r["indexed"])
        if since is None and not listing.items and held:
            report.listing_error = f"the BOE API listed no norm at all on a full listing (the index holds {held:,})"
            return _finish(index, report, client, started)
        report.listed = len(listing.items)
        report.doubts = listing.doubts
        plan = _plan(listing, state, options.selection, since is None, report)
        if options.dry_run:
            report.estimate = _estimate(plan, options.rate)
            return _finish(index, report, client, started, log=False)
        _remove(index, client, plan, state, options, report, say)
        model = _Model(index, options.build, notify, encoder)
        _fetch_and_index(index, client, plan, state, options, report, model, tick, say, progress, notify)
        if options.diario and not report.stopped:
            paths = _diario(client, state, options, report, tick, say)
            _index_batch(index, paths, options, report, model, progress, notify)
            _record(index, [(b, None, "diario", None) for b in report.diario if b not in report.failed])
        return _finish(index, report, client, started, log=True)


@dataclass
class _Store:
    """The store a run syncs: how it is named and the run's writer."""

    spec: StoreSpec
    writer: Writer


def _finish(index: _Store, report: SyncReport, client: BOEClient, started: float, log: bool = True) -> SyncReport:
    report.requests = client.requests
    report.throttled = client.throttled
    report.seconds = time.perf_counter() - started
    if index.writer.exists():
        manifest = index.writer.manifest()
        report.commit, report.chunks = manifest["commit"], manifest["counts"]["chunks"]
        if log and not report.dry_run:
            index.writer.log_sync(store.now(), report.to_dict())
    return report


class _Model:
    """The embedding model of the run: loaded when a batch first has something to index, then kept for the
    next batches (the one the index was built with, or `build.model`)."""

    def __init__(self, index: _Store, build: indexing.BuildOptions, notify, encoder=None) -> None:
        self.index, self.build, self.notify, self.encoder = index, build, notify, encoder

    def get(self):
        if self.encoder is None:
            writer = self.index.writer
            match = writer.manifest()["model"] if writer.exists() else None
            model_id, build = self.build.model or (match["id"] if match else None), self.build
            self.encoder = load_encoder(model_id, build.device, self.notify, backend=build.backend,
                                        precision=build.precision, match=match)  # fmt: skip
        return self.encoder


# --- planning -----------------------------------------------------------------------------------------------


@dataclass
class Plan:
    fetch: dict[str, dict] = field(default_factory=dict)  # boe_id → catalogue item, new, changed or retried
    remove: set[str] = field(default_factory=set)  # to remove (gone candidates are confirmed first)
    unselected: set[str] = field(default_factory=set)
    candidates: set[str] = field(default_factory=set)  # in the index, missing from a sound full listing
    forget: set[str] = field(default_factory=set)  # recorded, never indexed, missing from a full listing


def _plan(listing: Listing, state: dict, selection: Selection, full: bool, report: SyncReport) -> Plan:
    plan = Plan()
    norms = state["norms"]
    for boe_id, item in listing.items.items():
        recorded = norms.get(boe_id)
        wanted = selection.accepts(item)
        updated = item.get("fecha_actualizacion")
        undecided = wanted is None and recorded and recorded["state"] == "unselected"
        if undecided and (not updated or recorded["fecha_actualizacion"] == str(updated)):
            continue  # its own metadatos said no; nothing says otherwise
        if wanted is False:
            if recorded and recorded["state"] in IN_INDEX:
                plan.remove.add(boe_id)
            if recorded and recorded["state"] != "unselected":
                plan.unselected.add(boe_id)
            continue
        report.selected += 1
        if recorded is None or recorded["state"] in ("gone", "unselected", "diario"):
            report.new.append(boe_id)
        elif recorded["state"] in RETRIED or (updated and recorded["fecha_actualizacion"] != str(updated)):
            report.changed.append(boe_id)
        else:  # unchanged, or no date to compare: kept as it is (a listing with the date will tell)
            report.unchanged += 1
            continue
        plan.fetch[boe_id] = item
    if full and selection.ids is not None:
        report.unknown_ids = sorted(selection.ids - set(listing.items))
    for boe_id, recorded in norms.items():
        if boe_id in listing.items:
            continue
        if full and recorded["state"] in ("indexed", *RETRIED):  # a diario norm is not in the catalogue yet
            if not listing.sound:
                continue  # a listing in doubt removes nothing; retried norms wait for a sound one
            if recorded["state"] == "indexed" or recorded.get("indexed"):
                plan.candidates.add(boe_id)
            else:
                plan.forget.add(boe_id)
        elif recorded["state"] in RETRIED and (selection.ids is None or boe_id in selection.ids):
            report.changed.append(boe_id)  # outside this window: asked by id
            plan.fetch[boe_id] = {"identificador": boe_id, "fecha_actualizacion": None, "retry": True}
    return plan


def _estimate(plan: Plan, rate: float) -> dict:
    """What fetching and embedding the plan would take here (a dry run)."""
    chunks = CHUNKS_PER_NORM * len(plan.fetch)
    return {
        "fetch": len(plan.fetch),
        "fetch_seconds": round(len(plan.fetch) / rate, 1),
        "chunks_to_embed_about": chunks,
        "embed_hours_cpu_about": round(chunks / CPU_CHUNKS_PER_S / 3600, 2),
        "embed_hours_h200_about": round(chunks / GPU_CHUNKS_PER_S / 3600, 3),
        "remove": sorted(plan.remove | plan.candidates),
    }


# --- removing -----------------------------------------------------------------------------------------------


def removal_limit(indexed: int) -> int:
    """The most norms one run removes without --allow-removals."""
    return max(REMOVAL_FLOOR, int(REMOVAL_SHARE * indexed))


def _remove(index: _Store, client: BOEClient, plan: Plan, state: dict, options, report: SyncReport, say) -> None:
    """Remove the unselected norms and those gone from the catalogue (each confirmed by a 404 of its own
    endpoint), within the limit; record them. Over the limit, nothing is removed and the run says why."""
    indexed = sum(1 for r in state["norms"].values() if r["state"] in IN_INDEX)
    wanted = len(plan.remove) + len(plan.candidates)
    limit = removal_limit(indexed)
    if wanted > limit and not options.allow_removals:
        report.refused = (
            f"refused to remove {wanted:,} norms ({len(plan.candidates):,} missing from the listing, "
            f"{len(plan.remove):,} no longer selected): one run removes at most {limit:,} (5 % of the "
            f"{indexed:,} indexed, at least {REMOVAL_FLOOR}); if that is right, run again with --allow-removals"
        )
        plan.remove.clear()
        plan.unselected.clear()
        return
    if plan.candidates:
        say(f"checking {len(plan.candidates)} norms the catalogue no longer lists")
    for boe_id in sorted(plan.candidates):
        try:
            still_there = client.exists(boe_id)
        except FetchError:
            continue  # cannot tell: kept, asked again at the next full listing
        if still_there:
            report.kept.append(boe_id)
        else:
            report.gone.append(boe_id)
            plan.remove.add(boe_id)
    writer = index.writer
    present = set(writer.law_states()) & plan.remove if plan.remove and writer.exists() else set()
    if present:
        writer.commit(store.Change(removed=present, kind="sync"))
    report.removed = sorted(present)
    gone = set(report.gone) | plan.forget
    _record(index, [(b, None, "gone", None) for b in sorted(gone)]
            + [(b, None, "unselected", None) for b in sorted(plan.unselected)])  # fmt: skip
    for boe_id in sorted(gone):
        _drop_cached(client, boe_id)


def _drop_cached(client: BOEClient, boe_id: str) -> None:
    """Delete the cached texts of a gone norm: only the files this client wrote for that id."""
    for path in (client.path_for(boe_id), client.cache / "diario" / f"{boe_id}.xml"):
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError:
            continue
        if f"<identificador>{boe_id}</identificador>".encode() in head:
            path.unlink(missing_ok=True)


# --- fetching and indexing, in batches ----------------------------------------------------------------------


UPDATED = re.compile(rb"<fecha_actualizacion>\s*([0-9TZ]+)\s*</fecha_actualizacion>")
FLAGS = re.compile(rb"<(estatus_derogacion|estatus_anulacion|vigencia_agotada)>\s*S\s*</")


def _cached_update(path: Path) -> str | None:
    """The `fecha_actualizacion` recorded in a cached norm's metadatos (None when absent or unreadable)."""
    head = _head(path)
    found = UPDATED.search(head)
    return found[1].decode() if found else None


def _head(path: Path, size: int = 16384) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""


def _metadatos_item(path: Path) -> dict:
    """The fields of a fetched norm's metadatos that the selection looks at, as a catalogue item has them."""
    head = _head(path).decode("utf-8", "replace")
    item: dict = {}
    for tag in ("ambito", "rango"):
        found = re.search(rf'<{tag} codigo="([^"]*)">([^<]*)</{tag}>', head)
        if found:
            item[tag] = {"codigo": found[1], "texto": found[2]}
    found = re.search(r"<vigencia_agotada>\s*([SN])\s*</", head)
    if found:
        item["vigencia_agotada"] = found[1]
    found = re.search(r"<identificador>\s*([^<\s]+)\s*</", head)
    if found:
        item["identificador"] = found[1]
    return item


class _Breaker:
    """Counts failed norms in a row; open after `BREAKER` of them."""

    def __init__(self) -> None:
        self.row = 0

    def record(self, ok: bool) -> bool:
        self.row = 0 if ok else self.row + 1
        return self.row >= BREAKER


def _fetch_and_index(index, client, plan: Plan, state, options, report, model, tick, say, progress, notify) -> None:
    todo = sorted(plan.fetch)
    if not todo:
        return
    say(f"fetching {len(todo):,} norms at {1 / client.delay:g} requests/s: about {len(todo) * client.delay:,.0f} s")
    breaker, done, size = _Breaker(), 0, min(FIRST_BATCH, options.batch_norms)
    while done < len(todo) and not report.stopped:
        began = time.perf_counter()
        batch = todo[done : done + size]
        rows, paths = [], []
        for boe_id in batch:
            tick("fetch", done, len(todo))
            done += 1
            row, path = _fetch_one(client, boe_id, plan.fetch[boe_id], state, options.selection, report)
            rows.append(row)
            if path is not None:
                paths.append(path)
            if breaker.record(row[2] not in ("failed",)):
                report.stopped = _stop_line(report, todo[done:], row[3])
                break
        built = _index_batch(index, paths, options, report, model, progress, notify)
        _record(index, [_outcome(row, built, report) for row in rows])
        store.pause(f"sync-batch-{report.batches}")
        size = _next_size(size, len(batch), time.perf_counter() - began, options)
    if report.stopped:
        report.pending = todo[done:]
        _record(index, [(b, state["norms"].get(b, {}).get("fecha_actualizacion"), "pending", None)
                        for b in report.pending])  # fmt: skip
    tick("fetch", len(todo), len(todo))


def _outcome(row: tuple, built: bool, report: SyncReport) -> tuple:
    """A fetched norm's row once its batch was indexed: failed when indexing it failed."""
    boe_id, state = row[0], row[2]
    if state != "indexed":
        return row
    if boe_id in report.failed or not built:
        report.failed.setdefault(boe_id, "not indexed (its batch failed)")
        report.sources.pop(boe_id, None)
        return (boe_id, None, "failed", report.failed[boe_id])
    return row


def _stop_line(report: SyncReport, left: list[str], why: str | None) -> str:
    return (f"stopped after {BREAKER} norms in a row failed (last: {why}); {len(report.failed)} failed and "
            f"{len(left):,} not tried are kept for the next run, which continues from them")  # fmt: skip


def _next_size(size: int, fetched: int, seconds: float, options: SyncOptions) -> int:
    """The next batch's size: about `batch_minutes` of work at the pace of the last batch, within bounds."""
    if fetched < size or seconds <= 0:
        return size
    return max(1, min(options.batch_norms, int(options.batch_minutes * 60 / (seconds / fetched))))


def _fetch_one(client, boe_id: str, item: dict, state, selection: Selection, report) -> tuple[tuple, Path | None]:
    """Fetch one planned norm (a cached text of the same update is reused): its `norms` row and its file."""
    recorded = state["norms"].get(boe_id, {})
    listed = item.get("fecha_actualizacion")
    cached = client.path_for(boe_id)
    fresh = bool(listed) and cached.exists() and _cached_update(cached) == str(listed)
    try:
        path = cached if fresh else client.get(boe_id, refresh=True)
    except NotFound:
        report.missing.append(boe_id)
        return (boe_id, recorded.get("fecha_actualizacion"), "missing", "404"), None
    except FetchError as exc:
        report.failed[boe_id] = str(exc)
        return (boe_id, recorded.get("fecha_actualizacion"), "failed", str(exc)), None
    report.fetched += 0 if fresh else 1
    if selection.accepts(item) is None and selection.accepts(_metadatos_item(path)) is False:  # decided on its own
        return (boe_id, _cached_update(path), "unselected", None), None
    if FLAGS.search(_head(path)):
        report.derogated.append(boe_id)
    report.sources[boe_id] = str(path)
    return (boe_id, _cached_update(path) or (str(listed) if listed else None), "indexed", None), path


def _index_batch(index: _Store, paths: list[Path], options, report, model: _Model, progress, notify) -> bool:
    """One commit of these sources (an ordinary `indexing.build`); their failures go to `report.failed`."""
    if not paths:
        return False
    try:
        built = indexing.build([str(p) for p in paths], index.spec, options.build, encoder=model.get(),
                               progress=progress, notify=notify, writer=index.writer)  # fmt: skip
    except indexing.NothingToIndex as exc:
        for error in exc.errors:
            report.failed[_boe_id_of(str(error))] = str(error)
        return False
    for error in built.errors:
        report.failed[_boe_id_of(str(error))] = str(error)
    report.embedded += built.embedded
    report.batches += 1
    return True


def _diario(client: BOEClient, state: dict, options: SyncOptions, report: SyncReport, tick, say) -> list[Path]:
    """New norms of section I of the daily BOE since `options.since` (or the day after the last day read) that
    pass the selection, fetched as published. Marks read only the days before the first that failed, and today
    only once it has a sumario."""
    today = datetime.date.today()
    if options.since:
        first = _day(options.since)
    elif state["diario_until"]:
        first = state["diario_until"] + datetime.timedelta(days=1)
    else:
        first = today - datetime.timedelta(days=14)
    days = [first + datetime.timedelta(days=n) for n in range((today - first).days + 1)]
    say(f"reading {len(days)} daily sumarios from {first.isoformat()}")
    paths: list[Path] = []
    known = state["norms"]
    read_until = None
    for done, day in enumerate(days):
        tick("diario", done, len(days))
        try:
            sumario = client.sumario(day.strftime("%Y%m%d"))
        except FetchError as exc:
            report.failed[f"sumario {day.isoformat()}"] = str(exc)
            break
        if sumario is None and day == today:
            break  # not published yet: read again next run
        for boe_id, departamento in section_one(sumario):
            if boe_id in known or boe_id in report.new or boe_id in report.changed or boe_id in report.diario:
                continue
            if not _diario_selected(boe_id, departamento, options.selection):
                continue
            try:
                path = client.diario(boe_id)
            except FetchError as exc:
                report.failed[boe_id] = str(exc)
                continue
            if options.selection.rangos and options.selection.accepts(
                {"identificador": boe_id, "ambito": "1", "rango": {"texto": _document_rango(path)}}
            ) is False:  # fmt: skip
                continue
            paths.append(path)
            report.diario.append(boe_id)
        read_until = day
    report.diario_until = read_until.isoformat() if read_until else None
    tick("diario", len(days), len(days))
    return paths


AUTONOMICO = re.compile(r"^(COMUNIDAD|COMUNITAT|CIUDAD AUT|ILLES BALEARS|PRINCIPADO|REGI[OÓ]N|XUNTA|GENERALITAT)")


def _diario_selected(boe_id: str, departamento: str, selection: Selection) -> bool:
    """Whether a sumario item passes `--ids` and `--ambito` (a community's department is autonómico)."""
    if selection.ids is not None:
        return boe_id in selection.ids
    ambito = "2" if AUTONOMICO.match(departamento.strip().upper()) else "1"
    return ambito in AMBITOS[selection.ambito]


def _document_rango(path: Path) -> str:
    found = re.search(rb"<rango[^>]*>([^<]*)</rango>", _head(path))
    return found[1].decode("utf-8", "replace").strip() if found else ""


def section_one(sumario: dict | None) -> list[tuple[str, str]]:
    """(id, departamento) of the BOE-A items of section I (disposiciones generales) of a sumario (every diario
    of the day)."""
    if not sumario:
        return []
    found: dict[str, str] = {}
    diarios = _listed((sumario.get("data") or {}).get("sumario", {}).get("diario"))
    for diario in diarios:
        for seccion in _listed(diario.get("seccion")):
            if str(seccion.get("codigo")) != "1":
                continue
            for departamento in _departamentos(seccion):
                for item in _items(departamento):
                    boe_id = item.get("identificador", "")
                    if boe_id.startswith("BOE-A-") and boe_id not in found:
                        found[boe_id] = str(departamento.get("nombre", ""))
    return list(found.items())


def _departamentos(node) -> Iterable[dict]:
    """The departamento nodes under a seccion, through `texto` wrappers."""
    for child in _listed(node.get("departamento")) + [
        d for t in _listed(node.get("texto")) if isinstance(t, dict) for d in _listed(t.get("departamento"))
    ]:
        if isinstance(child, dict):
            yield child


def _items(node) -> Iterable[dict]:
    """Every `item` under a sumario node, through departamento, epigrafe and `texto` wrappers."""
    if isinstance(node, list):
        for child in node:
            yield from _items(child)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "item":
                yield from (i for i in _listed(value) if isinstance(i, dict))
            elif key in ("departamento", "epigrafe", "texto"):
                yield from _items(value)


def _listed(value) -> list:
    """The BOE's JSON gives one child as an object, several as an array."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# --- state --------------------------------------------------------------------------------------------------


def _boe_id_of(message: str) -> str:
    found = re.search(r"[A-Z]{2,5}-[A-Za-z]-\d{4}-\d+", message)
    return found[0] if found else message[:80]


def _read_state(writer: Writer | Path | str) -> dict:
    """What earlier runs recorded: each norm's update and state (and whether the index holds it), when the last
    complete run and the last complete full listing began, with which selection, the last day of sumarios read.
    Given a store's address rather than a run's writer, it reads without taking the lock."""
    if not isinstance(writer, Writer):
        writer = open_writer(writer)
    state = {"norms": {}, "last_run": None, "last_full": None, "diario_until": None, "selection": None}
    if not writer.exists():
        return state
    held = set(writer.law_states())
    state["norms"] = {
        boe_id: {"fecha_actualizacion": r["fecha_actualizacion"], "state": r["state"], "indexed": boe_id in held}
        for boe_id, r in writer.norm_states().items()
    }
    for at, run in writer.sync_runs():
        if run.get("diario_until"):
            state["diario_until"] = _day(run["diario_until"])
        if run.get("dry_run") or run.get("listing_error") or run.get("stopped"):
            continue
        state["last_run"] = run.get("started") or at
        state["selection"] = run.get("selection")
        if run.get("listing") == "full":
            state["last_full"] = state["last_run"]
    return state


def _window_start(state: dict, full: bool, selection: dict) -> str | None:
    """The `from` of a window listing (YYYYMMDD), or None for a full listing: asked for, the first run, a
    selection other than the last run's, or the last full listing more than `FULL_EVERY` days ago."""
    if full or not state["last_run"] or not state["last_full"] or state["selection"] != selection:
        return None
    now = datetime.datetime.now(datetime.UTC)
    last_full = datetime.datetime.fromisoformat(state["last_full"].replace("Z", "+00:00"))
    if (now - last_full).days >= FULL_EVERY:
        return None
    last = datetime.datetime.fromisoformat(state["last_run"].replace("Z", "+00:00"))
    return (last - datetime.timedelta(days=WINDOW_OVERLAP)).strftime("%Y%m%d")


def _record(index: _Store, rows: list[tuple]) -> None:
    """Each norm's state — indexed (with the update fetched), missing (404), failed, pending, gone, unselected,
    diario — in one transaction: (boe_id, fecha_actualizacion, state, error)."""
    if rows and index.writer.exists():
        now = store.now()
        index.writer.record_norms([(b, u, s, now, e) for b, u, s, e in rows])


def _code(value) -> str:
    return str(value.get("codigo", "")) if isinstance(value, dict) else str(value or "")


def _day(value) -> datetime.date:
    if isinstance(value, datetime.date):
        return value
    text = str(value)
    return datetime.date.fromisoformat(text if "-" in text else f"{text[:4]}-{text[4:6]}-{text[6:8]}")
