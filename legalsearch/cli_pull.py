"""`legalsearch pull` and `legalsearch detach`: follow a publisher's releases (legalsearch/pull.py)."""

# no `from __future__ import annotations`: typer reads the options' annotations, local to `register`
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from .errors import LegalSearchError

LABELS = {"download": "Downloading release"}


def register(app: typer.Typer) -> None:
    """Add `pull` and `detach` to the `legalsearch` command."""
    from .cli import IndexOpt, default_index, err, fail, out, report_errors

    @app.command()
    def pull(
        url: Annotated[
            Optional[str],  # noqa: UP045 (typer needs Optional on 3.10)
            typer.Argument(
                metavar="URL",
                help="The release folder's URL (https; http only on this machine; file or a path), as its publisher "
                "gives it [default: the one the index follows].",
            ),
        ] = None,
        index_path: IndexOpt = None,
        trust: Annotated[
            Optional[list[Path]],  # noqa: UP045
            typer.Option(
                "--trust",
                metavar="KEY.pub",
                help="The publisher's public key (KEY.pub); repeatable [default: the keys recorded at the first pull].",
            ),
        ] = None,
        insecure: Annotated[
            bool,
            typer.Option("--insecure", help="Allow plain http to other machines (files are still checked)."),
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the run's report as JSON.")] = False,
    ) -> None:
        """Download a published index, or the changes since the last pull, checked against the signed manifest."""
        from . import pull as pull_module

        target = index_path or default_index()
        try:
            with _progress(err) as progress:
                report = pull_module.pull(
                    target, url, list(trust or ()), insecure=insecure, progress=progress,
                    notify=lambda message: err.print(f"[yellow]note:[/yellow] {escape(message)}", soft_wrap=True),
                )  # fmt: skip
        except LegalSearchError as exc:
            report_errors(getattr(exc, "errors", []))
            raise fail(exc) from None
        except KeyboardInterrupt:
            raise fail(f"interrupted: {target} was not changed; run pull again to continue the download", 130) from None
        if as_json:
            from .terminal import json_text

            sys.stdout.write(json_text(report.to_dict()) + "\n")
            return
        out.print(_summary(report), soft_wrap=True)

    @app.command()
    def detach(index_path: IndexOpt = None) -> None:
        """Stop following a publisher: `index` and `sync` may write the index again, `pull` no longer updates it."""
        from . import pull as pull_module

        target = index_path or default_index()
        try:
            record = pull_module.detach(target)
        except LegalSearchError as exc:
            raise fail(exc) from None
        out.print(
            f"{target}: detached from {escape(record['url'])}; it is yours now (`index`, `sync`), and pull will not "
            "update it",
            soft_wrap=True,
        )


def _summary(report) -> str:
    from .files import human_bytes

    if report.up_to_date:
        return f"{report.index}: up to date (release {report.sequence} of {report.url})"
    how = ", ".join(report.steps)
    fetched = f"{human_bytes(report.downloaded)} downloaded in {report.files} files"
    return f"{report.index}: release {report.sequence} of {report.url} ({how}); {fetched}; {report.seconds:.1f} s"


class _progress:
    """The pull's progress: bars in a terminal (bytes, rate, time left), plain lines every 10 s or 10 % in a log."""

    def __init__(self, console) -> None:
        self.console = console

    def __enter__(self):
        from .pull import PlainBytes

        self.steps: set[str] = set()
        if not self.console.is_terminal:
            plain = PlainBytes(lambda line: print(line, file=sys.stderr, flush=True), LABELS)
            self.bars = None

            def lines(stage: str, done: int, total: int) -> None:
                if stage.startswith("apply:"):
                    return self._step(stage, lambda text: print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr))
                plain(stage, done, total)

            return lines
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bars = Progress(
            TextColumn("{task.description:20}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=self.console, transient=False,
        )  # fmt: skip
        self.bars.__enter__()
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage.startswith("apply:"):
                return self._step(stage, lambda text: self.console.print(f"[dim]{escape(text)}[/dim]", soft_wrap=True))
            if stage not in tasks:
                tasks[stage] = self.bars.add_task(LABELS.get(stage, stage), total=total)
            self.bars.update(tasks[stage], completed=done, total=total)

        return progress

    def _step(self, stage: str, write) -> None:
        """A step of installing or applying a release (FAISS, BM25, the catalogue …), said once."""
        name = stage.split(":", 1)[1]
        if name not in self.steps:
            self.steps.add(name)
            write(f"Building the index: {name}")

    def __exit__(self, *exc) -> None:
        if self.bars is not None:
            self.bars.__exit__(*exc)
