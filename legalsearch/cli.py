"""The `legalsearch` command. It parses arguments, calls the library and renders; it holds no logic of its own.

Library errors become one line on stderr and a non-zero exit here, and only here.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from . import indexing, modes, sources
from .dates import check_day
from .documents import Law
from .embedding import default_model, recorded_runtime
from .engines import STORE_ENV, StoreSpec
from .errors import LegalSearchError, UsageError
from .progress import PlainProgress
from .search import Filters, LegalSearch
from .sources.fetch import DEFAULT_API, BOEClient, default_cache
from .terminal import SafeConsole, clean, json_text
from .wordings import plain_diff

app = typer.Typer(
    help="Semantic search over Spanish legislation (BOE), article by article, with citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog="Environment: LEGALSEARCH_STORE (the store: an index folder, qdrant://HOST:PORT/NAME or qdrant:PATH/NAME), "
    "LEGALSEARCH_INDEX (index folder; default indexes/default), LEGALSEARCH_CACHE (downloaded "
    "laws; default corpora/cache), LEGALSEARCH_MODEL (model of a new index; default "
    "dariolopez/bge-m3-es-legal-tmp-3), LEGALSEARCH_MODELS (exported ONNX/OpenVINO models; default "
    f"~/.cache/legalsearch/models), LEGALSEARCH_BOE_API (the BOE open-data API's root; default {DEFAULT_API}).",
    rich_markup_mode=None,  # plain help: rich markup would eat every "[default …]" and "legalsearch[ray]"
)
# every line printed goes through `SafeConsole`: no escape sequence from a law's text reaches the terminal
out = SafeConsole(highlight=False)
err = SafeConsole(stderr=True, highlight=False)

SourcesArg = Annotated[
    list[str],
    typer.Argument(help="Files, folders, BOE ids (BOE-A-1978-31229) or text files listing BOE ids, one per line."),
]
CacheOpt = Annotated[
    Optional[Path],  # noqa: UP045 (typer needs Optional on 3.10)
    typer.Option("--cache", help="Folder of downloaded BOE laws [env LEGALSEARCH_CACHE; default corpora/cache]."),
]
IndexOpt = Annotated[
    Optional[str],  # noqa: UP045 (a store address is not a path: Path would fold qdrant:// into qdrant:/)
    typer.Option(
        "--index",
        "--store",
        help="Index folder [env LEGALSEARCH_INDEX; default indexes/default], or a store: qdrant://HOST:PORT/NAME (a "
        "Qdrant server; API key in QDRANT_API_KEY) or qdrant:PATH/NAME (Qdrant's local mode) [env LEGALSEARCH_STORE, "
        "before LEGALSEARCH_INDEX].",
    ),
]
ModelOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--model", help="sentence-transformers model: hub id or local folder [env LEGALSEARCH_MODEL]."),
]
BackendOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--backend",
        help="torch, onnx or openvino [default: the index's; for a new index openvino bf16 on a CPU, torch fp16 on "
        "a GPU].",
    ),
]
PrecisionOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--precision",
        help="fp32, fp16 (torch, GPU), bf16 (torch, openvino) or int8 (onnx, openvino) [default: the index's; for a "
        "new index bf16 with openvino, fp16 with torch on a GPU, else fp32].",
    ),
]
ModeOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--mode", help=f"{modes.choices()} [default: the index's, recorded per model]."),
]
LawOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--law", help="Only this law (BOE id); repeatable."),
]
RangoOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--rango", help="Only laws of this rango (Ley, Real Decreto …); repeatable."),
]
KindOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--kind", help="articulos, disposiciones, or a unit kind (articulo, anexo …); repeatable."),
]
VigentesOpt = Annotated[bool, typer.Option("--vigentes", help="Leave out laws known to be repealed.")]
MateriaOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--materia", help="Only laws with this BOE subject heading (materia, from `sync`); repeatable."),
]
AsOfFilterOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--as-of",
        help="Search the law as it read on this date (YYYY-MM-DD): the wordings then in force where the index "
        "holds them (index --history); units that came into force later are left out.",
    ),
]
ShortlistOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--shortlist", min=1, help="Funnel: candidates taken at the small dim [the index's, 1000]."),
]
AsOfOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--as-of", help="Use the wording in force on this date (YYYY-MM-DD), where the source has versions."),
]
RerankOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--rerank", help="Rescore the first hits with this CrossEncoder (hub id or folder) [off]."),
]
RerankDepthOpt = Annotated[int, typer.Option("--rerank-depth", min=1, max=200, help="How many hits --rerank rescores.")]
HistoryOpt = Annotated[
    bool,
    typer.Option(
        "--history",
        help="Also keep every earlier wording of each article, to search the law as of any date (ask --as-of); "
        "BOE API XML carries them.",
    ),
]


def _print_json(data: object) -> None:
    """`--json` output: JSON whose strings cannot drive the terminal (`terminal.json_text`)."""
    sys.stdout.write(json_text(data) + "\n")


def fail(message: str | LegalSearchError, code: int | None = None) -> typer.Exit:
    """One line on stderr and the exit to raise: 2 for usage errors (the caller must change the input), else 1."""
    if code is None:
        code = 2 if isinstance(message, UsageError) else 1
    err.print(f"[red]error:[/red] {escape(str(message))}", soft_wrap=True)
    return typer.Exit(code)


def report_errors(errors: list[LegalSearchError]) -> None:
    for error in errors:
        err.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)


def load_laws(arguments: list[str], cache: Path | None, as_of: str | None, history: bool = False) -> sources.LoadReport:
    client = BOEClient(cache=cache or default_cache())
    return sources.load(arguments, as_of=as_of, history=history, fetcher=client.get)


@app.command()
def fetch(
    boe_ids: Annotated[list[str], typer.Argument(help="BOE ids, or text files listing them.")],
    cache: CacheOpt = None,
    refresh: Annotated[bool, typer.Option(help="Download again even when cached.")] = False,
) -> None:
    """Download laws' consolidated text and metadata from the BOE open-data API into the cache."""
    client = BOEClient(cache=cache or default_cache())
    errors: list[LegalSearchError] = []
    try:
        wanted = [s.boe_id for s in sources.resolve(boe_ids)]
    except LegalSearchError as exc:
        raise fail(exc) from None
    if None in wanted:
        raise fail("fetch takes BOE ids or lists of them, not law files", 2)
    for boe_id in wanted:
        try:
            path = client.get(boe_id, refresh=refresh)
            out.print(f"{boe_id}  {path}  ({path.stat().st_size / 1024:.0f} KiB)")
        except LegalSearchError as exc:
            errors.append(exc)
    report_errors(errors)
    if errors:
        raise typer.Exit(1)


def _law_table(law: Law) -> Table:
    table = Table(title=f"{law.boe_id} · {escape(law.title)}", title_justify="left", show_lines=False)
    for column in ("id", "heading", "path", "chars"):
        table.add_column(column, overflow="fold", justify="right" if column == "chars" else "left")
    for article in law.articles:
        table.add_row(
            article.article_id, escape(article.heading), escape(" › ".join(article.path)), str(len(article.text))
        )
    return table


@app.command()
def parse(
    source: SourcesArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the laws and their units as JSON.")] = False,
    cache: CacheOpt = None,
    as_of: AsOfOpt = None,
    history: HistoryOpt = False,
    table: Annotated[bool, typer.Option(help="List every unit (id, heading, path, length).")] = True,
) -> None:
    """Show what would be indexed: per law, units by kind and the list of units."""
    try:
        report = load_laws(source, cache, as_of, history)
    except LegalSearchError as exc:
        raise fail(exc) from None
    if as_json:
        _print_json([law.to_dict() for law in report.laws])
    else:
        for law in report.laws:
            counts = ", ".join(f"{kind}: {n}" for kind, n in law.counts().items())
            title = "" if law.title in ("", law.boe_id) else f" {escape(law.title)}"
            out.print(f"[bold]{law.boe_id}[/bold]{title} [dim]({law.source_format}, {escape(law.origin)})[/dim]")
            out.print(f"  {len(law.articles)} units — {counts}")
            if history:
                changed = len({a.article_id for a in law.history})
                out.print(f"  {len(law.history)} earlier wordings of {changed} units")
            if table:
                out.print(_law_table(law))
    report_errors(report.errors)
    if report.errors:
        raise typer.Exit(1)


def default_index() -> str:
    """The store of a command given neither --index nor --store: LEGALSEARCH_STORE, else LEGALSEARCH_INDEX, else
    indexes/default."""
    return os.environ.get(STORE_ENV) or os.environ.get("LEGALSEARCH_INDEX") or "indexes/default"


def _label(target: str) -> str:
    """How messages name the store `target` gives (`StoreSpec.label`: never a key); bad addresses fail here."""
    try:
        return StoreSpec.parse(target).label
    except LegalSearchError as exc:
        raise fail(exc) from None


def _human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@app.command()
def index(
    source: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(
            help="Files, folders, BOE ids (BOE-A-1978-31229) or text files listing BOE ids, one per line "
            "[default: --set basico].",
            show_default=False,
        ),
    ] = None,
    law_set: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--set",
            help="A built-in set of laws: basico (CE, ET, LPAC, LAU: minutes on a CPU), codigos (the main codes), "
            "justicio (the 40 laws of the legal model's training questions); repeatable.",
        ),
    ] = None,
    index_path: IndexOpt = None,
    model: ModelOpt = None,
    dims: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--dims",
            help="Matryoshka dims to build FAISS files for, e.g. 1024,256,64 [default: the full dim, 128, 64].",
        ),
    ] = None,
    faiss_kind: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--faiss", help="FAISS index per dim: flat (exact, default) or hnsw (approximate, large corpora)."
        ),
    ] = None,
    quantize: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Store each dim as none (float32), int8 or binary; hits are always rescored in float."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Chunks per encoding batch.")] = 16,
    max_tokens: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--max-tokens", min=32, help="Chunk budget: longer articles are split at apartados [512]."),
    ] = None,
    device: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="cpu, cuda, cuda:1 … [default: CUDA in fp16 when present, else CPU]."),
    ] = None,
    backend: BackendOpt = None,
    precision: PrecisionOpt = None,
    replace: Annotated[bool, typer.Option(help="Drop laws of the index that are not among SOURCE.")] = False,
    cache: CacheOpt = None,
    as_of: AsOfOpt = None,
    history: HistoryOpt = False,
    distributed: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--distributed", help="Embed on a cluster: ray (pip install 'legalsearch[ray]')."),
    ] = None,
    ray_address: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--ray-address", help="Ray cluster to join (ray://host:10001, auto) [default: a local one]."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Ray: embedding actors.")] = 2,
    gpus_per_worker: Annotated[
        float, typer.Option("--gpus-per-worker", min=0, help="Ray: GPUs per actor (0: CPU actors).")
    ] = 0,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact", help="Merge the index's segments into one, dropping deleted rows (alone: only that)."
        ),
    ] = False,
) -> None:
    """Parse, chunk and embed laws into an index (adding to or updating an existing one)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if compact and not source and not law_set:
        return _compact(index_path or default_index())

    try:
        source = list(source or []) + [str(sources.set_path(name)) for name in law_set or []]
    except LegalSearchError as exc:
        raise fail(exc) from None
    if not source:
        source = [str(sources.set_path("basico"))]
        err.print("note: no SOURCE given: indexing the basic set (CE, ET, LPAC, LAU); --set codigos or --set "
                  "justicio for more", soft_wrap=True)  # fmt: skip
    target = index_path or default_index()
    label = _label(target)
    wanted_dims = _parse_dims(dims)
    client = BOEClient(cache=cache or default_cache())
    labels = {"parse": "Parsing sources", "embed": "Embedding chunks", "write": "Writing index"}
    plain = PlainProgress(lambda line: print(line, file=sys.stderr, flush=True), labels)
    with Progress(
        TextColumn("{task.description:18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False, disable=not err.is_terminal,
    ) as bars:  # fmt: skip
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if not err.is_terminal:  # a log or a pipe: plain lines every 10 s or 10 %
                return plain(stage, done, total)
            if stage not in tasks:
                tasks[stage] = bars.add_task(labels[stage], total=total)
            bars.update(tasks[stage], completed=done, total=total)

        try:
            report = indexing.build(
                source, target, model=model,
                dims=wanted_dims, faiss_kind=faiss_kind, quantize=quantize, max_tokens=max_tokens,
                batch_size=batch_size, device=device, backend=backend, precision=precision, as_of=as_of,
                history=history, fetcher=client.get, replace=replace, progress=progress, distributed=distributed,
                ray_address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker, compact=compact,
                notify=lambda message: err.print(f"[yellow]note:[/yellow] {escape(message)}", soft_wrap=True),
            )  # fmt: skip
        except LegalSearchError as exc:
            report_errors(getattr(exc, "errors", []))
            raise fail(exc) from None
        except KeyboardInterrupt:
            bars.stop()
            message = f"interrupted: {label} was not changed (an update is committed only when complete)"
            raise fail(message, 130) from None
    report_errors(report.errors)
    for line in report.duplicates:
        err.print(f"[yellow]note:[/yellow] {line}", soft_wrap=True)
    status = "up to date, nothing to embed" if report.up_to_date else f"{report.embedded} chunks embedded"
    earlier = f" (and {report.earlier_wordings} earlier wordings)" if report.earlier_wordings else ""
    out.print(
        f"{label}: {report.laws} laws, {report.articles} units{earlier}, {report.chunks} chunks "
        f"({status}, {report.reused} reused); dims {', '.join(map(str, report.dims))}; "
        f"{report.seconds:.1f} s; {_human_bytes(report.bytes)}",
        soft_wrap=True,
    )
    if report.compacted:
        merged = report.compacted
        out.print(
            f"merged {merged['merged']} segments into one of {merged['rows']} rows in {merged['seconds']:.1f} s",
            soft_wrap=True,
        )
    if report.errors:
        raise typer.Exit(1)


@app.command()
def sync(
    index_path: IndexOpt = None,
    ambito: Annotated[str, typer.Option(help="estatal, autonomico or todo.")] = "estatal",
    rango: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--rango", help="Only norms of this rango (Ley, Real Decreto, 1300 …); repeatable."),
    ] = None,
    ids: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--ids", help="Only the BOE ids listed in this file, one per line (e.g. corpora/justicio.txt)."),
    ] = None,
    vigentes: Annotated[bool, typer.Option("--vigentes", help="Skip norms whose vigencia is agotada.")] = False,
    rate: Annotated[float, typer.Option("--rate", help="Requests per second to the BOE API.")] = 2.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be fetched and embedded.")] = False,
    full: Annotated[
        bool, typer.Option("--full", help="List the whole catalogue, not the window since the last run.")
    ] = False,
    diario: Annotated[
        bool, typer.Option("--diario", help="Also index new norms of the daily BOE (section I).")
    ] = False,
    since: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--since", help="--diario: the first day (YYYY-MM-DD) [default: after the last run, or 14 days]."),
    ] = None,
    api: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--api", help="BOE API root [env LEGALSEARCH_BOE_API; default https://www.boe.es/datosabiertos/api]."
        ),
    ] = None,
    cache: CacheOpt = None,
    model: ModelOpt = None,
    dims: Annotated[Optional[str], typer.Option("--dims", help="As for `index`.")] = None,  # noqa: UP045
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Chunks per encoding batch.")] = 16,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda … (as for `index`).")] = None,  # noqa: UP045
    backend: BackendOpt = None,
    precision: PrecisionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's report as JSON.")] = False,
    allow_removals: Annotated[
        bool, typer.Option("--allow-removals", help="Remove more than 5 % of the index in one run (gone norms).")
    ] = False,
) -> None:
    """Mirror the BOE catalogue of consolidated legislation into the index and keep it current (incremental)."""
    from . import sync as sync_module

    target = index_path or default_index()
    label = _label(target)
    try:
        if since is not None:
            check_day(since, "--since")
        wanted = None if ids is None else sync_module.read_ids(ids)
        selection = sync_module.Selection(ambito, tuple(rango or ()), wanted, vigentes)
        build = indexing.BuildOptions(
            model=model, dims=_parse_dims(dims),
            batch_size=batch_size, device=device, backend=backend, precision=precision,
        )  # fmt: skip
        options = sync_module.SyncOptions(selection, rate, full, dry_run, diario, since, build=build,
                                          allow_removals=allow_removals)  # fmt: skip
        client = BOEClient(cache=cache or default_cache(), base_url=api)
        plain = PlainProgress(lambda line: print(line, file=sys.stderr, flush=True), SYNC_LABELS)
        report = sync_module.sync(target, options, client, progress=plain, notify=_note)
    except LegalSearchError as exc:
        report_errors(getattr(exc, "errors", []))
        raise fail(exc) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted: {label} keeps its last commit; run sync again to continue", 130) from None
    if as_json:
        _print_json(report.to_dict())
    else:
        _print_sync(report)
    for line in report.problems():
        err.print(f"[red]failed:[/red] {escape(line)}", soft_wrap=True)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _print_syncs(search: LegalSearch, last: int = 3) -> None:
    """`info`: the last sync runs the index remembers (`LegalSearch.syncs`)."""
    for run in search.syncs()[-last:]:
        out.print(
            f"last sync  {run['at']}: {run['listing']}; new {len(run['new'])}, changed {len(run['changed'])}, "
            f"derogated {len(run['derogated'])}, removed {len(run['removed'])}, failed {len(run['failed'])}"
            + (f", daily BOE {len(run['diario'])}" if run.get("diario") else ""),
            soft_wrap=True,
        )


def _note(message: str) -> None:
    err.print(f"[yellow]note:[/yellow] {escape(message)}", soft_wrap=True)


SYNC_LABELS = {"list": "Listing the catalogue", "fetch": "Fetching norms", "diario": "Reading sumarios",
               "parse": "Parsing sources", "embed": "Embedding chunks", "write": "Writing index"}  # fmt: skip


def _print_sync(report) -> None:
    lines = [
        f"{report.index}: {report.listing} listing, {report.listed:,} norms listed, {report.selected:,} selected",
        f"new {len(report.new)}, changed {len(report.changed)} (derogated or annulled among them "
        f"{len(report.derogated)}), unchanged {report.unchanged:,}; removed {len(report.removed)} (gone "
        f"{len(report.gone)}); 404 {len(report.missing)} (asked again next run); failed {len(report.failed)}",
        f"{report.fetched} fetched in {report.requests} requests; {report.embedded} chunks embedded; "
        f"{report.chunks:,} chunks in the index (commit {report.commit}); {report.seconds:.1f} s",
    ]
    if report.diario:
        lines.append(f"daily BOE: {len(report.diario)} new norms indexed as published (until {report.diario_until})")
    if report.unknown_ids:
        lines.append(f"not in the catalogue ({len(report.unknown_ids)} of --ids): {', '.join(report.unknown_ids[:10])}")
    if report.doubts:
        lines.append(f"listing in doubt ({'; '.join(report.doubts)}): nothing removed as gone this run")
    if report.dry_run:
        estimate = report.estimate
        dry = (
            f"dry run: would fetch {estimate['fetch']} norms (about {estimate['fetch_seconds']:.0f} s at this rate), "
            f"embed about {estimate['chunks_to_embed_about']:,} chunks (about {estimate['embed_hours_cpu_about']} h "
            f"on this kind of CPU, {estimate['embed_hours_h200_about']} h on one H200) and remove "
            f"{len(estimate['remove'])}"
        )
        lines = [*lines[:2], dry]
    for line in lines:
        out.print(line, soft_wrap=True)


def _compact(target: str) -> None:
    """`legalsearch index --compact` alone: merge every segment of the index at `target`."""
    from .engines import open_writer
    from .store import read_manifest

    label = _label(target)
    try:
        spec = StoreSpec.parse(target)
        if spec.engine == "local":
            read_manifest(spec.path)  # no index there: one line, and nothing locked or made
        with open_writer(spec) as writer:
            writer.manifest()
            merged = writer.compact(everything=True)
    except LegalSearchError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted: {label} was not changed (a merge is committed only when complete)", 130) from None
    if merged is None:
        out.print(f"{label}: one segment and no deleted rows; nothing to merge", soft_wrap=True)
    else:
        out.print(f"{label}: merged {merged['merged']} segments into one of {merged['rows']} rows in "
                  f"{merged['seconds']:.1f} s", soft_wrap=True)  # fmt: skip


def _open(
    index_path: str | None, model: str | None = None, backend: str | None = None, precision: str | None = None
) -> LegalSearch:
    try:
        return LegalSearch.open(index_path or default_index(), model=model, backend=backend, precision=precision)
    except LegalSearchError as exc:
        raise fail(exc) from None


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in Spanish.")],
    index_path: IndexOpt = None,
    k: Annotated[int, typer.Option("--k", "-k", help="How many articles.")] = 5,
    dim: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--dim", help="Matryoshka dim to search at [default: the index's default, the full dim]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as a JSON array.")] = False,
    model: ModelOpt = None,
    mode: ModeOpt = None,
    law: LawOpt = None,
    rango: RangoOpt = None,
    kind: KindOpt = None,
    vigentes: VigentesOpt = False,
    as_of: AsOfFilterOpt = None,
    materia: MateriaOpt = None,
    shortlist: ShortlistOpt = None,
    context: Annotated[
        bool, typer.Option("--context", help="Print numbered sources with their text, ready for a prompt.")
    ] = False,
    budget: Annotated[int, typer.Option("--budget", min=1, help="Token budget of --context.")] = 2000,
    backend: BackendOpt = None,
    precision: PrecisionOpt = None,
    rerank: RerankOpt = None,
    rerank_depth: RerankDepthOpt = 20,
) -> None:
    """Answer a question with the articles that best match it, cited."""
    from .query_encoder import use_encoder_daemon  # the query model stays loaded between asks (encoder_daemon.py)

    use_encoder_daemon()
    search = _open(index_path, model, backend, precision)
    filters = Filters.build(law, rango, kind, vigentes, as_of, materia)
    try:
        if context:
            prompt = search.context(question, k=k, max_tokens=budget, dim=dim, mode=mode, filters=filters)
            sys.stdout.write(clean(prompt) + "\n")
            return
        hits = search.search(
            question, k=k, dim=dim, mode=mode, filters=filters, shortlist=shortlist, rerank=rerank,
            rerank_depth=rerank_depth,
        )  # fmt: skip
    except LegalSearchError as exc:
        raise fail(exc) from None
    if as_json:
        _print_json([hit.to_dict() for hit in hits])
        return
    if not hits:
        out.print(_no_results(search, filters), soft_wrap=True)
        return
    if not any(hit.good_match for hit in hits):
        out.print("[yellow]No good match:[/yellow] none of these units answers the question well (relevance below "
                  "0.5); the closest follow.", soft_wrap=True)  # fmt: skip
    for hit in hits:
        how = " [green](cita)[/green]" if hit.match == "cita" else ""
        relevance = f"[cyan]{hit.relevance:.2f}[/cyan]" if hit.good_match else f"[dim]{hit.relevance:.2f}[/dim]"
        out.print(f"[bold]{hit.rank}.[/bold] {relevance}  [bold]{escape(hit.citation)}[/bold]{how}", soft_wrap=True)
        if hit.path:
            out.print(f"   [dim]{escape(' › '.join(hit.path))}[/dim]", soft_wrap=True)
        out.print(f"   {escape(hit.heading)}", soft_wrap=True)
        snippet = " ".join(hit.matched_text.split("\n", 1)[-1].split())
        out.print(f"   {escape(snippet[:300])}{'…' if len(snippet) > 300 else ''}", soft_wrap=True)
        out.print(f"   [blue]{escape(hit.url)}[/blue]", soft_wrap=True)


def _no_results(search: LegalSearch, filters: Filters) -> str:
    """Why a search found nothing, in one line."""
    if not search.manifest["counts"]["chunks"]:
        return "No results: the index is empty."
    if filters.active:
        return "No results: no unit matches the filters."
    return "No good match: no unit holds any word of the question (lexical search); rephrase it."


@app.command()
def article(
    law: Annotated[str, typer.Argument(help="The law: BOE id (BOE-A-2015-11430) or short name (ET, CE, LPAC, LAU …).")],
    unit: Annotated[str, typer.Argument(help='The unit as a lawyer writes it: "56", "art. 56 bis", "a56", "da1" …')],
    as_of: AsOfOpt = None,
    index_path: IndexOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the unit and its wordings as JSON.")] = False,
) -> None:
    """Print one unit of a law whole: citation, place, status, wording dates, text and earlier wordings."""
    search = _open(index_path)
    try:
        found = search.article(law, unit, as_of)
    except LegalSearchError as exc:
        raise fail(exc) from None
    if found is None:
        when = f" in force on {as_of}" if as_of else ""
        raise fail(f"no unit {unit!r}{when} in law {law!r} of {search.path}; `legalsearch info` lists its laws", 1)
    if as_json:
        return _print_json(found)
    out.print(f"[bold]{escape(found['citation'])}[/bold]  [dim]({found['article_id']})[/dim]", soft_wrap=True)
    out.print(escape(found["heading"]), soft_wrap=True)
    if found["path"]:
        out.print(f"[dim]{escape(' › '.join(found['path']))}[/dim]", soft_wrap=True)
    dates = f"; redacción vigente desde el {found['version_date']}" if found.get("version_date") else ""
    if found.get("version_until"):
        dates += f" hasta el {found['version_until']}"
    out.print(f"{found['status']}{dates}  [blue]{escape(found['url'])}[/blue]", soft_wrap=True)
    out.print("")
    out.print(escape(found["text"]), soft_wrap=True)
    if len(found["wordings"]) > 1:
        out.print("\n[bold]Redacciones[/bold]")
        for w in found["wordings"]:
            given = _given_by(w["version_norma"], found["boe_id"])
            out.print(f"  desde {w['version_date']} hasta {w['version_until'] or 'hoy'}{given}  "
                      f"[blue]{escape(w['url'])}[/blue]", soft_wrap=True)  # fmt: skip


def _given_by(norma: str | None, boe_id: str) -> str:
    if not norma:
        return ""
    return ", texto original" if norma == boe_id else f", redacción dada por {norma}"


@app.command()
def diff(
    boe_id: Annotated[str, typer.Argument(help="The law's BOE id, e.g. BOE-A-1978-31229.")],
    article: Annotated[str, typer.Argument(help="The unit: a135, da1 … (as in its BOE link after #).")],
    date_from: Annotated[str, typer.Option("--from", help="The earlier date, YYYY-MM-DD.")],
    date_to: Annotated[str, typer.Option("--to", help="The later date, YYYY-MM-DD.")],
    index_path: IndexOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Both texts, their dates and norms, and the spans.")] = False,
) -> None:
    """Word-level diff between the wordings of a unit in force on two dates (index built with --history)."""
    search = _open(index_path)
    try:
        result = search.diff(boe_id, article, date_from, date_to)
    except LegalSearchError as exc:
        raise fail(exc) from None
    if as_json:
        _print_json(result)
        return
    from rich.text import Text

    for side, label in (("from", "desde"), ("to", "hasta")):
        w = result[side]
        norma = _given_by(w["version_norma"], result["boe_id"])
        out.print(f"[bold]{label} {w['date']}[/bold]: redacción vigente desde el {w['version_date']}{norma}  "
                  f"[blue]{escape(w['url'])}[/blue]", soft_wrap=True)  # fmt: skip
    if not result["changed"]:
        out.print("Sin cambios: la misma redacción en las dos fechas.")
        return
    text = Text()
    for span in result["spans"]:
        if span["op"] in ("delete", "replace"):
            text.append(span["old"], style="red strike")
        if span["op"] in ("insert", "replace"):
            text.append(span["new"], style="green underline")
        if span["op"] == "equal":
            text.append(span["old"])
    if not out.is_terminal:  # plain text where colours do not show: [-removed-] {+added+}
        text = Text(plain_diff(result["spans"]))
    out.print(text, soft_wrap=True)


@app.command()
def changes(
    since: Annotated[str, typer.Option("--since", help="From this date on, YYYY-MM-DD.")],
    until: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--until", help="Up to this date, YYYY-MM-DD [default: today and after]."),
    ] = None,
    law: LawOpt = None,
    index_path: IndexOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the feed as JSON.")] = False,
) -> None:
    """The units whose wording changed since a date, by law, with the norm that changed each."""
    search = _open(index_path)
    try:
        feed = search.changes(since, until, tuple(law or ()))
    except LegalSearchError as exc:
        raise fail(exc) from None
    if as_json:
        _print_json(feed)
        return
    if not feed:
        out.print(f"Sin cambios desde el {since} en las redacciones que guarda {search.path}.")
        return
    for entry in feed:
        name = f" ({entry['short_name']})" if entry["short_name"] else ""
        title = "" if entry["title"] == entry["boe_id"] else f" {escape(entry['title'])}"
        out.print(f"[bold]{entry['boe_id']}[/bold]{name}{title}", soft_wrap=True)
        for change in entry["changes"]:
            out.print(f"  {change['version_date']}  {escape(change['heading'])} — modificado por "
                      f"{change['version_norma']}  [blue]{escape(change['url'])}[/blue]", soft_wrap=True)  # fmt: skip


@app.command()
def info(
    index_path: IndexOpt = None,
    verify: Annotated[bool, typer.Option(help="Check every file against its sha256 in the manifest.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Describe an index: model, dims, counts, sources, files."""
    from .store import verify_checksums

    search = _open(index_path)
    manifest = search.manifest
    if as_json:
        _print_json(manifest)
    else:
        model, counts = manifest["model"], manifest["counts"]
        out.print(f"[bold]{search.path}[/bold] (format {manifest['format_version']}, "
                  f"legalsearch {manifest['legalsearch_version']})")  # fmt: skip
        revision = model.get("revision") or "unknown"
        runtime = " ".join(recorded_runtime(model))
        if model.get("variant"):
            runtime += f" ({model['variant']})"
        out.print(f"model      {model['id']} (revision {revision}), {model['dim']} dims, "
                  f"embedded with {runtime}, max {model['max_seq_length']} tokens", soft_wrap=True)  # fmt: skip
        factories = manifest["faiss"]["factory"]
        out.print(f"dims       {', '.join(f'{d} ({factories[str(d)]})' for d in manifest['dims'])}; "
                  f"default {manifest['defaults'].get('dim')}, inner product on re-normalised prefixes")  # fmt: skip
        defaults = manifest.get("defaults", {})
        weights = defaults.get("hybrid_weights", {})
        lexical = manifest.get("lexical", {}).get("kind", "none (re-run `legalsearch index` to add it)")
        out.print(f"search     default mode {defaults.get('mode', 'dense')} (RRF dense {weights.get('dense', 1)} : "
                  f"lexical {weights.get('lexical', 1)}), funnel {defaults.get('funnel_dim')} → full dim, shortlist "
                  f"{defaults.get('funnel_shortlist')}; storage {manifest['faiss'].get('quantize', 'none')}; "
                  f"lexical {lexical}", soft_wrap=True)  # fmt: skip
        earlier = f" + {counts['earlier_wordings']} earlier wordings" if counts.get("earlier_wordings") else ""
        out.print(f"contents   {counts['laws']} laws, {counts['articles']} units{earlier}, {counts['chunks']} chunks "
                  f"(chunk budget {manifest['chunking']['max_tokens']} tokens)")  # fmt: skip
        out.print(f"built      {manifest['created']}; updated {manifest['updated']} (commit {search.commit})")
        parts = manifest.get("segments", [])
        deleted = sum(p["deleted"] for p in parts)
        size = indexing.stored_bytes(search.path, manifest)
        out.print(
            f"storage    {_human_bytes(size)}: {len(parts)} segment{'s' * (len(parts) != 1)}"
            f" ({deleted} deleted rows awaiting a merge), {len(manifest['files'])} segment files + the catalogue",
            soft_wrap=True,
        )
        _print_syncs(search)
        for law in search.laws():
            title = "" if law["title"] in ("", law["boe_id"]) else escape(law["title"])
            out.print(f"  {law['boe_id']:18} {law['articles']:5} units  {title}".rstrip(), soft_wrap=True)
    if verify:
        bad = verify_checksums(search.path, manifest)
        if bad:
            raise fail(f"{search.path}: checksum mismatch in {', '.join(bad)}; rebuild the index into a new --index")
        line = (
            f"checksums  ok: all {len(manifest['files'])} segment files match their sha256, and the catalogue "
            "passes SQLite's integrity check"
        )
        (err if as_json else out).print(line, soft_wrap=True)


@app.command()
def serve(
    index_path: IndexOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    token: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            envvar="LEGALSEARCH_TOKEN",
            show_default=False,
            help="Require this secret of every request (Authorization: Bearer TOKEN; browsers ask for it as the "
            "password); at least 16 characters. Needed off loopback [env LEGALSEARCH_TOKEN].",
        ),
    ] = None,
    allowed_host: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--allowed-host",
            help="Also answer requests for this host name (behind a proxy, or off loopback); repeatable. On "
            "loopback only localhost, 127.0.0.1 and [::1] with the port are answered otherwise.",
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Serve off loopback without a token: anyone who reaches the port.")
    ] = False,
    backend: BackendOpt = None,
    precision: PrecisionOpt = None,
) -> None:
    """Serve the index over HTTP (FastAPI): POST /search, /search/batch; GET /laws, /health; docs at /docs."""
    try:
        import uvicorn

        from .server import allowed_hosts, create_app, is_loopback
    except ImportError:
        raise fail("serving needs FastAPI and uvicorn: pip install 'legalsearch[serve]'") from None
    if token is not None and len(token) < 16:
        raise fail(
            f"--token is too short ({len(token)} characters; at least 16): make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe())'",
            code=2,
        )
    if not is_loopback(host) and token is None and not insecure:
        raise fail(
            f"--host {host} opens the index to the network without a token: give --token (or set "
            f"LEGALSEARCH_TOKEN), or --insecure to serve it to anyone who can reach port {port}",
            code=2,
        )
    search = _open(index_path, None, backend, precision)
    try:
        search.search("calentamiento", k=1)  # load the model and the index files once, before the first request
        api = create_app(search, token=token, hosts=allowed_hosts(host, port, allowed_host or ()))
    except LegalSearchError as exc:
        raise fail(exc) from None
    if not is_loopback(host) and token is None:
        err.print(f"[yellow]warning:[/yellow] no token: anyone who can reach {host}:{port} can use this server")
    access = "token required" if token else "no token"
    shown_host = f"[{host.strip('[]')}]" if ":" in host else host  # an IPv6 address in a URL: [::1]
    err.print(f"serving {search.path} on http://{shown_host}:{port} (docs at /docs; {access})", soft_wrap=True)
    uvicorn.run(api, host=host, port=port, log_level="warning")


@app.command("mcp")
def mcp_server(
    index_path: IndexOpt = None,
    http: Annotated[bool, typer.Option("--http", help="Streamable HTTP on 127.0.0.1 instead of stdio.")] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of --http.")] = 8765,
    backend: BackendOpt = None,
    precision: PrecisionOpt = None,
) -> None:
    """Serve the index as Model Context Protocol tools (search, get_article, list_laws, diff_wordings, changes)."""
    try:
        from .mcp_server import create_server
    except ImportError:
        raise fail("the MCP server needs the mcp SDK: pip install 'legalsearch[mcp]'") from None
    search = _open(index_path, None, backend, precision)
    server = create_server(search)
    if http:
        err.print(f"MCP over streamable HTTP at http://127.0.0.1:{port}/mcp ({search.path})")
        server.run("streamable-http", host="127.0.0.1", port=port)
    else:
        server.run("stdio")


def _parse_dims(dims: str | None) -> list[int] | None:
    if not dims:
        return None
    try:
        return [int(d) for d in dims.replace(" ", "").split(",") if d]
    except ValueError:
        raise fail(f"--dims {dims!r}: give numbers separated by commas, e.g. 1024,256,64", 2) from None


@app.command("eval")
def evaluate(
    questions: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(help='JSONL of questions: question, boe_id, article (as written: "14", "14 bis").'),
    ] = None,
    index_path: IndexOpt = None,
    dims: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--dims", help="Dims to evaluate, e.g. 1024,256 [default: every dim built]."),
    ] = None,
    mode: ModeOpt = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", help="Folder for metrics.json, metrics.csv and a TREC run file per dim."),
    ] = None,
    pairs: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--pairs", help="JSONL of (question, context) pairs: the model card's protocol, no index."),
    ] = None,
    model: ModelOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    backend: BackendOpt = None,
    precision: PrecisionOpt = None,
    ablate: Annotated[
        bool, typer.Option("--ablate", help="Each ranking component's contribution: every prior off, the lexicon off.")
    ] = False,
    rerank: RerankOpt = None,
) -> None:
    """Retrieval metrics per Matryoshka dim, named and defined as on the model card."""
    from .embedding import dims_for, load_encoder
    from .evaluation import (
        METRIC_NAMES,
        ablation,
        evaluate_index,
        evaluate_pairs,
        load_pairs,
        load_questions,
        write_report,
    )

    wanted = _parse_dims(dims)
    try:
        if pairs is not None:
            encoder = load_encoder(model or default_model(), backend=backend, precision=precision)
            report = evaluate_pairs(encoder, load_pairs(pairs), dims_for(encoder.dim, wanted), batch_size)
        elif questions is not None and ablate:
            search = _open(index_path, model, backend, precision)
            return _print_ablation(ablation(search, load_questions(questions), mode, rerank), search, mode)
        elif questions is not None:
            search = _open(index_path, model, backend, precision)
            report = evaluate_index(search, load_questions(questions), wanted, mode, rerank=rerank)
        else:
            raise fail("give a QUESTIONS.jsonl file, or --pairs PAIRS.jsonl", 2)
    except LegalSearchError as exc:
        raise fail(exc) from None
    title = f"{report.protocol} · mode {report.mode} · {report.questions} questions · {report.model}"
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for dim in report.dims:
        table.add_column(str(dim), justify="right")
    for name in METRIC_NAMES:
        table.add_row(name, *(f"{report.metrics[dim][name]:.4f}" for dim in report.dims))
    out.print(table)
    for item in report.skipped:
        err.print(f"[yellow]not scored:[/yellow] {item['id']} {item['relevant']}: {item['reason']}", soft_wrap=True)
    if output is not None:
        for path in write_report(report, output):
            err.print(f"wrote {path}")


def _print_ablation(rows: list[dict], search: LegalSearch, mode: str | None) -> None:
    title = (
        f"ablation · mode {mode or search.default_mode} · dim {search.default_dim} · {search.manifest['model']['id']}"
    )
    table = Table(title=title, title_justify="left")
    for column in ("variant", "acc@1", "acc@10", "MRR@10", "NDCG@10", "Δ MRR@10"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        values = [f"{row[m]:.4f}" for m in ("acc@1", "acc@10", "mrr@10", "ndcg@10")]
        table.add_row(escape(row["variant"]), *values, f"{row['delta_mrr']:+.4f}")
    out.print(table)


@app.command()
def calibrate(
    questions: Annotated[Path, typer.Argument(help='JSONL of questions: question, boe_id, article ("14", "14 bis").')],
    index_path: IndexOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Measure and show; change nothing.")] = False,
) -> None:
    """Measure dense, lexical and hybrid at several fusion weights on your questions, and make the best the
    index's default search (written into its manifest; index updates keep it)."""
    from .engines import open_writer
    from .evaluation import calibrate as measure
    from .evaluation import load_questions

    search = _open(index_path)
    try:
        result = measure(search, load_questions(questions))
    except LegalSearchError as exc:
        raise fail(exc) from None
    table = Table(title=f"{result['questions']} questions · {search.manifest['model']['id']}", title_justify="left")
    for column in ("mode", "dense weight", "acc@1", "acc@10", "MRR@10", "NDCG@10"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for row in result["table"]:
        weight = "" if row["dense_weight"] is None else f"{row['dense_weight']:g}"
        table.add_row(row["mode"], weight, *(f"{row[m]:.4f}" for m in ("acc@1", "acc@10", "mrr@10", "ndcg@10")))
    out.print(table)
    chosen = result["mode"] + (
        f" (dense weight {result['hybrid_weights']['dense']:g})" if result["mode"] == "hybrid" else ""
    )
    if dry_run:
        out.print(f"best: {chosen}; --dry-run: {search.spec.label} not changed")
        return
    calibration = {"file": str(questions), "questions": result["questions"], "metric": result["metric"],
                   "table": result["table"]}  # fmt: skip
    try:
        with open_writer(search.spec) as writer:  # the store's writer lock: a run never mixes two writers' defaults
            writer.update_defaults({"mode": result["mode"], "hybrid_weights": result["hybrid_weights"],
                                    "calibration": calibration})  # fmt: skip
    except LegalSearchError as exc:
        raise fail(exc) from None
    out.print(f"{search.spec.label}: default search is now {chosen}")


# Commands kept in modules of their own register on `app` here (one line each).
# (publish, keygen: cli_publish.py · pull, detach: cli_pull.py)
__import__("legalsearch.cli_publish").cli_publish.register(app)  # publish, keygen
__import__("legalsearch.cli_pull").cli_pull.register(app)  # pull, detach


def main() -> None:
    if not os.environ.get("LEGALSEARCH_DEBUG"):
        warnings.simplefilter("ignore")  # third-party warnings never reach the user; our own errors are lines
    app()
