"""The `legalsearch` command. It parses arguments, calls the library and renders; it holds no logic of its own.

Library errors become one line on stderr and a non-zero exit here, and only here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import sources
from .documents import Law
from .errors import LegalSearchError
from .sources.fetch import BOEClient, default_cache

app = typer.Typer(
    help="Semantic search over Spanish legislation (BOE), article by article, with citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

SourcesArg = Annotated[
    list[str],
    typer.Argument(help="Files, folders, BOE ids (BOE-A-1978-31229) or text files listing BOE ids, one per line."),
]
CacheOpt = Annotated[
    Optional[Path],  # noqa: UP045 (typer needs Optional on 3.10)
    typer.Option("--cache", help="Folder of downloaded BOE laws [env LEGALSEARCH_CACHE; default corpora/cache]."),
]
AsOfOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--as-of", help="Use the wording in force on this date (YYYY-MM-DD), where the source has versions."),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(code)


def report_errors(errors: list[LegalSearchError]) -> None:
    for error in errors:
        err.print(f"[red]error:[/red] {error}", soft_wrap=True)


def load_laws(arguments: list[str], cache: Path | None, as_of: str | None) -> sources.LoadReport:
    client = BOEClient(cache=cache or default_cache())
    return sources.load(arguments, as_of=as_of, fetcher=client.get)


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
        raise fail(str(exc)) from None
    if None in wanted:
        raise fail("fetch takes BOE ids or lists of them, not law files")
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
    table = Table(title=f"{law.boe_id} · {law.title}", title_justify="left", show_lines=False)
    for column in ("id", "heading", "path", "chars"):
        table.add_column(column, overflow="fold", justify="right" if column == "chars" else "left")
    for article in law.articles:
        table.add_row(article.article_id, article.heading, " › ".join(article.path), str(len(article.text)))
    return table


@app.command()
def parse(
    source: SourcesArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the laws and their units as JSON.")] = False,
    cache: CacheOpt = None,
    as_of: AsOfOpt = None,
    table: Annotated[bool, typer.Option(help="List every unit (id, heading, path, length).")] = True,
) -> None:
    """Show what would be indexed: per law, units by kind and the list of units."""
    report = load_laws(source, cache, as_of)
    if as_json:
        json.dump([law.to_dict() for law in report.laws], sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        for law in report.laws:
            counts = ", ".join(f"{kind}: {n}" for kind, n in law.counts().items())
            out.print(f"[bold]{law.boe_id}[/bold] {law.title} [dim]({law.source_format}, {law.origin})[/dim]")
            out.print(f"  {len(law.articles)} units — {counts}")
            if table:
                out.print(_law_table(law))
    report_errors(report.errors)
    if report.errors:
        raise typer.Exit(1)


def main() -> None:
    app()
