"""`legalsearch publish` and `legalsearch keygen`: an index published as a signed release folder
(docs/releases.md), registered on the main app by `register(app)`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import LegalSearchError


def register(app: typer.Typer) -> None:
    app.command()(publish)
    app.command()(keygen)


def publish(
    out: Annotated[Path, typer.Argument(help="The release folder to write (new, empty, or one publish wrote).")],
    index_path: Annotated[
        Optional[Path],  # noqa: UP045 (typer needs Optional on 3.10)
        typer.Option("--index", help="Index folder [env LEGALSEARCH_INDEX; default indexes/default]."),
    ] = None,
    key: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--key", help="Ed25519 private key file that signs the manifest (from `legalsearch keygen`)."),
    ] = None,
    expires_days: Annotated[
        float,
        typer.Option(
            "--expires-days", help="Followers refuse the manifest after this many days: publish again before."
        ),
    ] = 30.0,
    full: Annotated[bool, typer.Option("--full", help="Write a full release even where a delta would do.")] = False,
) -> None:
    """Write the index as a release others `pull`: the first time a full release, then a delta per publish."""
    from .cli import default_index, err, fail
    from .cli import out as stdout
    from .files import human_bytes
    from .progress import PlainProgress
    from .publish import publish as run

    if key is None:
        raise fail(
            "publish needs --key KEY (make one with `legalsearch keygen KEY`): followers refuse unsigned releases", 2
        )
    index = index_path or default_index()
    plain = PlainProgress(lambda line: print(line, file=sys.stderr, flush=True), {"chunks": "Writing chunks"})
    try:
        report = run(index, out, key, expires_days=expires_days, full=full, progress=plain)
    except LegalSearchError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted: {out} still holds the previous release", 130) from None
    what = {
        "full": f"full release {report.path} ({report.reason})"
        + (f", and the delta for followers ({human_bytes(report.delta_bytes)})" if report.delta_bytes else ""),
        "delta": f"delta {report.path}: {report.laws_changed} laws added or changed, {report.laws_removed} removed",
        "empty": "no change since the previous publish: a new manifest (expiry) only",
    }[report.kind]
    stdout.print(f"{report.out}: release {report.sequence}, {what}", soft_wrap=True)
    if report.kind != "empty":
        per_chunk = report.bytes / report.rows if report.rows else 0
        stdout.print(f"  {human_bytes(report.bytes)} for {report.rows:,} chunks ({per_chunk:,.0f} bytes a chunk; "
                     f"the index holds {human_bytes(report.index_bytes)}) in {report.seconds:.1f} s")  # fmt: skip
    if report.removed_parts:
        err.print(f"  removed {len(report.removed_parts)} older part(s): {', '.join(report.removed_parts)}")
    stdout.print(f"  signed; expires in {expires_days:g} days. Upload the folder, release.json last (docs/releases.md)")


def keygen(
    key: Annotated[Path, typer.Argument(help="Where to write the private key (KEY.pub gets the public one).")],
) -> None:
    """Make an Ed25519 key pair to sign releases: KEY (private, mode 0600, never printed) and KEY.pub."""
    from .cli import fail, out
    from .release import generate_key

    try:
        keyid = generate_key(key)
    except LegalSearchError as exc:
        raise fail(exc) from None
    except OSError as exc:
        raise fail(f"{key}: cannot write the key ({exc.strerror}); choose another path") from None
    out.print(f"{key}: private key (keep it secret; publish --key {key}); {key}.pub: public key {keyid} "
              f"(followers pull --trust {key}.pub)", soft_wrap=True)  # fmt: skip
