"""Readers for every format the BOE publishes a law in; the format is told from the content, not the name.

`parse_bytes(data, origin)` reads one law; `resolve(sources)` expands what a user typed (files, folders, BOE ids,
lists of BOE ids) into things to read; `load(sources)` does both, reporting failures without stopping.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..dates import check_day
from ..documents import Law
from ..errors import FetchError, LegalSearchError, ParseError, UsageError
from . import boe_html, boe_xml, pdf, text

FORMATS = ("boe-api-xml", "boe-diario-xml", "boe-html", "pdf", "markdown", "text")
BOE_ID_ARG = re.compile(
    r"^(?:BOE|BOJA|BOCM|DOGC|BOPV|BOA|BOC|DOG|BOIB|BORM|BON|BOPA|DOE|BOCYL|DOCM|BOR)-[A-Za-z]-\d{4}-\d+$"
)
SUFFIXES = {".xml", ".html", ".htm", ".pdf", ".txt", ".md", ".markdown"}
NOT_LAWS = ("README", "LICENSE", "CHANGELOG", "NOTICE")  # skipped when a folder is expanded
SETS_FOLDER = Path(__file__).resolve().parent.parent / "sets"  # lists of BOE ids shipped with legalsearch


def set_names() -> list[str]:
    """The built-in sets of laws (`legalsearch index --set NAME`): basico, codigos, justicio."""
    return sorted(p.stem for p in SETS_FOLDER.glob("*.txt"))


def set_path(name: str) -> Path:
    """The id list of a built-in set, or `UsageError` naming the sets there are."""
    path = SETS_FOLDER / f"{name}.txt"
    if not path.is_file():
        raise UsageError(f"--set {name!r}: no such set of laws; choose one of {', '.join(set_names())}")
    return path


def detect(data: bytes) -> str | None:
    """The source format of `data`, or None when it is none of `FORMATS`."""
    if not data.strip():
        return None
    for detector in (pdf.detect, boe_xml.detect, boe_html.detect, text.detect):
        if fmt := detector(data):
            return fmt
    return None


def parse_bytes(data: bytes, origin: str, as_of: str | None = None, history: bool = False) -> Law:
    """Read one law. `as_of` (ISO date) picks the wording in force that day, where the source has versions;
    `history` keeps the earlier wordings too (`Law.history`; the API's consolidated XML is the one format that
    carries them).

    >>> xml = Path("corpora/sample/laws/xml/BOE-A-1978-31229.texto.xml")  # the API's XML of the Constitution
    >>> law = parse_bytes(xml.read_bytes(), xml.name)
    >>> law.article("a14").heading
    'Artículo 14'
    """
    if as_of is not None:
        check_day(as_of, "--as-of")
    if not data.strip():
        raise ParseError(origin, "empty file")
    fmt = detect(data)
    if fmt is None:
        if b"\x00" not in data[:65536]:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ParseError(origin, f"not UTF-8 text (byte {exc.start}); convert it to UTF-8 first") from None
        raise ParseError(origin, "not a BOE XML, HTML, PDF, Markdown or UTF-8 text file (binary data?)")
    if fmt == "boe-api-xml":
        return boe_xml.parse_api(data, origin, as_of, history)
    if fmt == "boe-diario-xml":
        return boe_xml.parse_diario(data, origin)
    if fmt == "boe-html":
        return boe_html.parse(data, origin)
    if fmt == "pdf":
        return pdf.parse(data, origin)
    return text.parse(data, origin, markdown=fmt == "markdown")


def parse_file(path: str | Path, as_of: str | None = None, history: bool = False) -> Law:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ParseError(str(path), f"cannot read ({exc.strerror})") from None
    return parse_bytes(data, str(path), as_of, history)


@dataclass(frozen=True)
class Source:
    """One thing to read: a file, or a BOE id to take from the fetch cache (downloading it when missing)."""

    label: str
    path: Path | None = None
    boe_id: str | None = None


def read_id_list(path: Path) -> list[str]:
    """BOE ids from a list file: one per line, `#` starts a comment."""
    ids = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not BOE_ID_ARG.match(entry):
            raise ParseError(f"{path}:{number}", f"{entry!r} is not a BOE id (expected e.g. BOE-A-1978-31229)")
        ids.append(entry)
    return ids


def _is_id_list(path: Path) -> bool:
    if path.suffix.lower() != ".txt" or path.stat().st_size > 1_000_000:
        return False
    try:
        lines = [ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        return False
    entries = [ln for ln in lines if ln]
    return bool(entries) and all(BOE_ID_ARG.match(e) for e in entries)


def resolve(arguments: Iterable[str]) -> Iterator[Source]:
    """Expand SOURCE arguments: a file, a folder (its law files, recursively), a BOE id, or a list of BOE ids."""
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in SUFFIXES and not p.stem.upper().startswith(NOT_LAWS)
            )
            if not files:
                raise ParseError(argument, "folder holds no .xml, .html, .pdf, .txt or .md files")
            for file in files:
                yield from resolve([str(file)]) if _is_id_list(file) else [Source(str(file), path=file)]
        elif path.is_file():
            if _is_id_list(path):
                yield from (Source(boe_id, boe_id=boe_id) for boe_id in read_id_list(path))
            else:
                yield Source(argument, path=path)
        elif BOE_ID_ARG.match(argument):
            yield Source(argument, boe_id=argument)
        else:
            raise ParseError(argument, "no such file or folder, and not a BOE id (e.g. BOE-A-1978-31229)")


@dataclass
class LoadReport:
    laws: list[Law]
    errors: list[LegalSearchError]


def load(
    arguments: Iterable[str],
    *,
    as_of: str | None = None,
    history: bool = False,
    fetcher: Callable[[str], Path] | None = None,
    on_law: Callable[[Law | None, str], None] | None = None,
) -> LoadReport:
    """Read every source; a source that fails is reported in `errors` and the others are still read.

    `fetcher(boe_id) -> path` supplies BOE ids (the fetch cache); without it an id is an error.
    """
    if as_of is not None:
        check_day(as_of, "--as-of")
    laws: list[Law] = []
    errors: list[LegalSearchError] = []
    try:
        sources = list(resolve(arguments))
    except LegalSearchError as exc:
        return LoadReport(laws, [exc])
    for source in sources:
        law = None
        try:
            if source.boe_id is not None:
                if fetcher is None:
                    raise FetchError(f"{source.boe_id}: BOE ids need the fetcher (legalsearch fetch)")
                law = parse_file(fetcher(source.boe_id), as_of, history)
            else:
                law = parse_file(source.path, as_of, history)
            laws.append(law)
        except LegalSearchError as exc:
            errors.append(exc)
        if on_law is not None:
            on_law(law, source.label)
    return LoadReport(laws, errors)
