"""`legalsearch sync`: mirror the BOE's catalogue of consolidated legislation into an index, and keep it current.

A run: list the catalogue (`GET {api}/legislacion-consolidada`, pages of up to 10,000 ordered by id, repeated
ids dropped) — the whole of it on the first run, every `FULL_EVERY` days and with `--full`, otherwise the window
of norms updated since the last run (`from`); select (ámbito, rango, a list of ids, in force only); compare with
what the index recorded of each norm (`norms`: its `fecha_actualizacion` and state); fetch, one request at a
time at `--rate`, exactly the norms that are new or whose `fecha_actualizacion` changed; index them (one commit:
`indexing.build`); remove from the index the norms the catalogue no longer lists (seen on a full listing), whose
text now answers 404, or that no longer pass the selection; record every norm's state and the run (`syncs`).

Resumable: fetched texts are cached whole (written and renamed) and reused while their `fecha_actualizacion`
matches the catalogue's, and the index skips sources whose bytes it holds; a killed run, run again, fetches and
embeds only what it had not finished. A norm that answered 404 is recorded and not asked again until the
catalogue shows it updated.

With `--diario`, the daily sumarios since `--since` (or the last diario run) are read too: each new norm of
section I (disposiciones generales) is fetched as published in the daily BOE and indexed as original text, not
consolidated, until the consolidated version appears in the catalogue and replaces it.
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import indexing, store
from .errors import FetchError, UsageError
from .sources.fetch import BOEClient, NotFound
from .sources.structure import fold

AMBITOS = {"estatal": ("1",), "autonomico": ("2",), "todo": ("1", "2")}
FULL_EVERY = 7  # days between full listings of the catalogue (a window can miss a norm; a full listing cannot)
PAGE = 10_000  # the API's largest page
WINDOW_OVERLAP = 1  # days a window listing reaches back before the last run
# For estimates: the real catalogue is ~12,400 norms and ~0.5 M chunks; a model of the legal model's size embeds
# 2.42 chunks/s on a 2-core CPU (openvino bf16, 256 tokens) and 707/s on one H200 (torch fp16, 512 tokens), as
# measured with bench/backends.py and bench/gpu.py (README).
CHUNKS_PER_NORM = 40
CPU_CHUNKS_PER_S = 2.42
GPU_CHUNKS_PER_S = 707.0


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

    def accepts(self, item: dict) -> bool:
        if self.ids is not None and item["identificador"] not in self.ids:
            return False
        if self.ids is None and _code(item.get("ambito")) not in AMBITOS[self.ambito]:
            return False
        if self.rangos:
            rango = item.get("rango") or {}
            names = {fold(str(rango.get("texto", ""))), str(rango.get("codigo", ""))}
            if not names & {fold(r) for r in self.rangos}:
                return False
        return not (self.vigentes and item.get("vigencia_agotada") == "S")


@dataclass
class SyncReport:
    index: str
    listing: str = "full"  # or "window since YYYYMMDD"
    listed: int = 0
    selected: int = 0
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    derogated: list[str] = field(default_factory=list)  # among new and changed: vigencia agotada or derogated
    removed: list[str] = field(default_factory=list)  # dropped from the index: gone, 404, no longer selected
    gone: list[str] = field(default_factory=list)  # no longer in the catalogue (full listing)
    missing: list[str] = field(default_factory=list)  # the text answers 404 (not consolidated, withdrawn)
    failed: dict[str, str] = field(default_factory=dict)  # boe_id → why
    diario: list[str] = field(default_factory=list)  # indexed from the daily BOE (original text)
    diario_until: str | None = None  # the last day of sumarios read
    sources: dict[str, str] = field(default_factory=dict)  # boe_id → the cached text indexed
    unchanged: int = 0
    fetched: int = 0
    requests: int = 0
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
    def exit_code(self) -> int:
        return 1 if self.failed else 0


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


def sync(
    index: Path,
    options: SyncOptions,
    client: BOEClient,
    *,
    encoder=None,
    progress: Callable[[str, int, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> SyncReport:
    """One sync run of `index` against the API `client` talks to (see the module's docstring)."""
    options.selection.check()
    if options.rate <= 0:
        raise UsageError(f"--rate must be above 0 requests per second (got {options.rate})")
    client.delay = 1.0 / options.rate
    started = time.perf_counter()
    index = Path(index)
    report = SyncReport(str(index), dry_run=options.dry_run)
    tick = progress or (lambda stage, done, total: None)
    say = notify or (lambda message: None)
    with store.WriterLock(index):
        store.tidy(index)
        state = _read_state(index)
        since = _window_start(state, options.full)
        report.listing = "full" if since is None else f"window since {since}"
        items = list_catalogue(client, options.page, since, tick)
        report.listed = len(items)
        plan = _plan(items, state, options.selection, since is None, report)
        if options.dry_run:
            report.estimate = _estimate(plan, options.rate)
            report.requests = client.requests
            report.seconds = time.perf_counter() - started
            return report
        paths = _fetch(client, plan, state, report, tick, say)
        if options.diario:
            paths += _diario(client, state, options, report, tick, say)
        _index(index, paths, plan, options, report, encoder, progress, notify)
        _record(index, plan, report)
    report.requests = client.requests
    report.seconds = time.perf_counter() - started
    _log(index, report)
    return report


# --- listing ------------------------------------------------------------------------------------------------


def list_catalogue(client: BOEClient, page: int, since: str | None, tick=None) -> dict[str, dict]:
    """Every catalogue item (updated since `since`, YYYYMMDD, when given), by id: pages ordered by id, read
    until a short or empty page; an id met twice (a page that shifted) keeps its latest update."""
    items: dict[str, dict] = {}
    offset = 0
    while True:
        batch = client.catalogue_page(offset, page, since)
        for item in batch:
            boe_id = item.get("identificador") if isinstance(item, dict) else None
            if not boe_id:
                continue
            known = items.get(boe_id)
            if known is None or str(item.get("fecha_actualizacion", "")) > str(known.get("fecha_actualizacion", "")):
                items[boe_id] = item
        offset += len(batch)
        if tick:
            tick("list", len(items), len(items))
        if len(batch) < page:
            return items


@dataclass
class Plan:
    fetch: dict[str, dict] = field(default_factory=dict)  # boe_id → catalogue item, new or changed
    remove: set[str] = field(default_factory=set)
    unselected: set[str] = field(default_factory=set)


def _plan(items: dict[str, dict], state: dict, selection: Selection, full: bool, report: SyncReport) -> Plan:
    plan = Plan()
    norms = state["norms"]
    for boe_id, item in items.items():
        recorded = norms.get(boe_id)
        if not selection.accepts(item):
            if recorded and recorded["state"] in ("indexed", "diario"):
                plan.remove.add(boe_id)
                plan.unselected.add(boe_id)
            continue
        report.selected += 1
        updated = str(item.get("fecha_actualizacion", ""))
        if recorded is None or recorded["state"] in ("gone", "diario", "unselected"):
            report.new.append(boe_id)
        elif recorded["fecha_actualizacion"] != updated or recorded["state"] == "failed":
            report.changed.append(boe_id)
        else:
            report.unchanged += 1
            continue
        plan.fetch[boe_id] = item
        if item.get("vigencia_agotada") == "S" or item.get("estatus_derogacion") == "S":
            report.derogated.append(boe_id)
    for boe_id, recorded in norms.items():
        if boe_id in items:
            continue
        if full and recorded["state"] in ("indexed", "missing", "failed"):  # the whole catalogue lacks it
            report.gone.append(boe_id)
            plan.remove.add(boe_id)
        elif not full and recorded["state"] == "failed":  # failed last time, outside this window: try again
            report.changed.append(boe_id)
            plan.fetch[boe_id] = {"identificador": boe_id, "fecha_actualizacion": None}
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
        "remove": sorted(plan.remove),
    }


# --- fetching -----------------------------------------------------------------------------------------------


UPDATED = re.compile(rb"<fecha_actualizacion>\s*([0-9TZ]+)\s*</fecha_actualizacion>")


def _cached_update(path: Path) -> str | None:
    """The `fecha_actualizacion` recorded in a cached norm's metadatos (None when absent or unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError:
        return None
    found = UPDATED.search(head)
    return found[1].decode() if found else None


def _fetch(client: BOEClient, plan: Plan, state: dict, report: SyncReport, tick, say) -> list[Path]:
    """Fetch each planned norm once (a cached text of the same update is reused); 404s and failures recorded."""
    paths: list[Path] = []
    todo = sorted(plan.fetch)
    if todo:
        say(f"fetching {len(todo):,} norms at {1 / client.delay:g} requests/s: about {len(todo) * client.delay:,.0f} s")
    for done, boe_id in enumerate(todo):
        tick("fetch", done, len(todo))
        item = plan.fetch[boe_id]
        cached = client.path_for(boe_id)
        fresh = cached.exists() and _cached_update(cached) == str(item.get("fecha_actualizacion"))
        try:
            path = cached if fresh else client.get(boe_id, refresh=True)
            paths.append(path)
            report.sources[boe_id] = str(path)
            report.fetched += 0 if fresh else 1
        except NotFound:
            report.missing.append(boe_id)
            if state["norms"].get(boe_id, {}).get("state") in ("indexed", "diario"):
                plan.remove.add(boe_id)
        except FetchError as exc:
            report.failed[boe_id] = str(exc)
    tick("fetch", len(todo), len(todo))
    return paths


def _diario(client: BOEClient, state: dict, options: SyncOptions, report: SyncReport, tick, say) -> list[Path]:
    """New norms of section I of the daily BOE since `options.since` (or the day after the last diario run),
    fetched as published."""
    today = datetime.date.today()
    first = _day(options.since) if options.since else state["diario_until"] or today - datetime.timedelta(days=14)
    if options.since is None and state["diario_until"]:
        first = state["diario_until"] + datetime.timedelta(days=1)
    days = [first + datetime.timedelta(days=n) for n in range((today - first).days + 1)]
    say(f"reading {len(days)} daily sumarios from {first.isoformat()}")
    paths: list[Path] = []
    known = state["norms"]
    for done, day in enumerate(days):
        tick("diario", done, len(days))
        try:
            sumario = client.sumario(day.strftime("%Y%m%d"))
        except FetchError as exc:
            report.failed[f"sumario {day.isoformat()}"] = str(exc)
            continue
        for boe_id in section_one(sumario):
            if boe_id in known or boe_id in report.new or boe_id in report.changed:
                continue
            try:
                paths.append(client.diario(boe_id))
                report.diario.append(boe_id)
            except FetchError as exc:
                report.failed[boe_id] = str(exc)
    report.diario_until = days[-1].isoformat() if days else None
    tick("diario", len(days), len(days))
    return paths


def section_one(sumario: dict | None) -> list[str]:
    """The BOE-A ids of section I (disposiciones generales) of a sumario (every diario of the day)."""
    if not sumario:
        return []
    found: list[str] = []
    diarios = _listed((sumario.get("data") or {}).get("sumario", {}).get("diario"))
    for diario in diarios:
        for seccion in _listed(diario.get("seccion")):
            if str(seccion.get("codigo")) != "1":
                continue
            for item in _items(seccion):
                boe_id = item.get("identificador", "")
                if boe_id.startswith("BOE-A-") and boe_id not in found:
                    found.append(boe_id)
    return found


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


# --- indexing and state -------------------------------------------------------------------------------------


def _index(index: Path, paths: list[Path], plan: Plan, options: SyncOptions, report, encoder, progress, notify) -> None:
    if paths:
        try:
            built = indexing.build([str(p) for p in paths], index, options.build, encoder=encoder, progress=progress,
                                   notify=notify)  # fmt: skip
        except indexing.NothingToIndex as exc:
            for error in exc.errors:
                report.failed[_boe_id_of(str(error))] = str(error)
            return
        for error in built.errors:
            report.failed[_boe_id_of(str(error))] = str(error)
        report.embedded = built.embedded
    removable = {b for b in plan.remove if b not in plan.fetch or b in report.missing}
    present = _laws_in(index) & removable if removable and store.is_index(index) else set()
    if present:
        store.commit(index, store.Change(removed=present, kind="sync"))
    report.removed = sorted(present)
    if store.is_index(index):
        manifest = store.read_manifest(index)
        report.commit, report.chunks = manifest["commit"], manifest["counts"]["chunks"]


def _laws_in(index: Path) -> set[str]:
    connection = store.connect(index / store.DATABASE)
    try:
        return {r[0] for r in connection.execute("SELECT boe_id FROM laws")}
    finally:
        connection.close()


def _boe_id_of(message: str) -> str:
    found = re.search(r"[A-Z]{2,5}-[A-Za-z]-\d{4}-\d+", message)
    return found[0] if found else message[:80]


def _read_state(index: Path) -> dict:
    """What earlier runs recorded: each norm's update and state, when the last full listing and the last run
    were, the last day of sumarios read."""
    state = {"norms": {}, "last_run": None, "last_full": None, "diario_until": None}
    if not (index / store.DATABASE).is_file() or not store.is_index(index):
        return state
    connection = store.connect(index / store.DATABASE)
    try:
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "norms" not in tables:
            return state
        state["norms"] = {
            r["boe_id"]: {"fecha_actualizacion": r["fecha_actualizacion"], "state": r["state"]}
            for r in connection.execute("SELECT boe_id, fecha_actualizacion, state FROM norms")
        }
        for row in connection.execute("SELECT at, report FROM syncs ORDER BY id"):
            run = json.loads(row["report"])
            if run.get("dry_run"):
                continue
            state["last_run"] = row["at"]
            if run.get("listing") == "full":
                state["last_full"] = row["at"]
            if run.get("diario_until"):
                state["diario_until"] = _day(run["diario_until"])
    except sqlite3.DatabaseError as exc:
        raise store.damaged(index / store.DATABASE, f"unreadable database ({exc})") from None
    finally:
        connection.close()
    return state


def _window_start(state: dict, full: bool) -> str | None:
    """The `from` of a window listing (YYYYMMDD), or None for a full listing: asked for, the first run, or the
    last full listing more than `FULL_EVERY` days ago."""
    if full or not state["last_run"] or not state["last_full"]:
        return None
    now = datetime.datetime.now(datetime.UTC)
    last_full = datetime.datetime.fromisoformat(state["last_full"].replace("Z", "+00:00"))
    if (now - last_full).days >= FULL_EVERY:
        return None
    last = datetime.datetime.fromisoformat(state["last_run"].replace("Z", "+00:00"))
    return (last - datetime.timedelta(days=WINDOW_OVERLAP)).strftime("%Y%m%d")


def _record(index: Path, plan: Plan, report: SyncReport) -> None:
    """Each touched norm's state: indexed (with its update), missing (404), failed, gone, unselected, diario."""
    if not store.is_index(index):
        return
    now = store.now()
    rows = []
    for boe_id, item in plan.fetch.items():
        if boe_id in report.failed:
            rows.append((boe_id, None, "failed", now, report.failed[boe_id]))
        elif boe_id in report.missing:
            rows.append((boe_id, str(item.get("fecha_actualizacion")), "missing", now, "404"))
        else:
            updated = item.get("fecha_actualizacion") or _cached_update(Path(report.sources.get(boe_id, "")))
            rows.append((boe_id, updated, "indexed", now, None))
    rows += [(b, None, "gone", now, None) for b in report.gone]
    rows += [(b, None, "unselected", now, None) for b in plan.unselected]
    rows += [(b, None, "diario", now, None) for b in report.diario if b not in report.failed]
    connection = store.open_writer(index / store.DATABASE)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany("INSERT OR REPLACE INTO norms VALUES (?, ?, ?, ?, ?)", rows)
        connection.execute("COMMIT")
    finally:
        connection.close()


def _log(index: Path, report: SyncReport) -> None:
    """Remember the run in the catalogue's `syncs` (a dry run too, marked so)."""
    if not store.is_index(index):
        return
    with store.WriterLock(index):
        connection = store.open_writer(index / store.DATABASE)
        try:
            connection.execute(
                "INSERT INTO syncs (at, report) VALUES (?, ?)", (store.now(), json.dumps(report.to_dict()))
            )
        finally:
            connection.close()


def _code(value) -> str:
    return str(value.get("codigo", "")) if isinstance(value, dict) else str(value or "")


def _day(value) -> datetime.date:
    if isinstance(value, datetime.date):
        return value
    text = str(value)
    return datetime.date.fromisoformat(text if "-" in text else f"{text[:4]}-{text[4:6]}-{text[6:8]}")
