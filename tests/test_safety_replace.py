"""`index --replace` removes laws only when every source it was given was read: a missing path, an empty folder,
a zero-byte, broken, unreadable or dangling source leaves every stored law (and every byte of the index) where
it was, and says so in one line. A property test drives it with random mixtures of sources."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from legalsearch import indexing
from legalsearch.cli import app
from legalsearch.search import LegalSearch

from .test_index_search import LAW_A, LAW_B
from .test_safety import snapshot

runner = CliRunner()
LAW_C = """Ley 4/2099, de garantías de prueba. BOE-A-2099-4
Artículo 1. Garantía.
La garantía adicional podrá pactarse libremente por las partes.
"""
LAW_D = """Ley 5/2099, de plazos de prueba. BOE-A-2099-5
Artículo 1. Plazos.
Los plazos señalados por días se entienden hábiles.
"""
TEXTS = {"BOE-A-2099-1": LAW_A, "BOE-A-2099-2": LAW_B, "BOE-A-2099-4": LAW_C, "BOE-A-2099-5": LAW_D}
WITHHELD = "could not be read; --replace removed nothing"


@pytest.fixture(scope="module")
def built(tmp_path_factory, encoder) -> tuple[Path, Path]:
    """(the user's folder of law files, an index of all four built from it)."""
    root = tmp_path_factory.mktemp("replace")
    laws = root / "laws"
    laws.mkdir()
    for boe_id, text in TEXTS.items():
        (laws / f"{boe_id}.txt").write_text(text, encoding="utf-8")
    indexing.build([str(laws)], root / "idx", encoder=encoder, max_tokens=96)
    return laws, root / "idx"


def stored_laws(index: Path, encoder) -> set[str]:
    return {law["boe_id"] for law in LegalSearch.open(index, encoder=encoder).laws()}


def _case(name: str, laws: Path, tmp: Path) -> list[str]:
    """The SOURCE arguments of one careless run: the user means their folder of laws; something is not
    readable."""
    if name == "missing-dir":
        return [str(tmp / "no" / "such" / "dir")]
    if name == "missing-first":
        return [str(tmp / "no-such-file.txt"), str(laws)]
    if name == "empty-folder":
        (tmp / "empty").mkdir()
        return [str(tmp / "empty")]
    victim = laws / "BOE-A-2099-4.txt"
    if name == "zero-byte":
        victim.write_bytes(b"")
    elif name == "broken":
        victim.write_bytes(b"\x00\xff<?xml garbage" + os.urandom(64))
    elif name == "dangling-link":
        victim.unlink()
        victim.symlink_to(tmp / "gone.txt")
    return [str(laws)]


@pytest.mark.parametrize(
    "case", ["missing-dir", "missing-first", "empty-folder", "zero-byte", "broken", "dangling-link"]
)
def test_replace_removes_nothing_unless_every_source_was_read(built, encoder, tmp_path, case) -> None:
    laws, _ = built
    mine = tmp_path / "laws"  # the user's folder, the index built from it
    shutil.copytree(laws, mine)
    index = tmp_path / "idx"
    indexing.build([str(mine)], index, encoder=encoder, max_tokens=96)
    arguments = _case(case, mine, tmp_path)
    before, users = snapshot(index), snapshot(mine)
    result = runner.invoke(app, ["index", *arguments, "--replace", "--index", str(index)])
    assert result.exit_code == 1, result.output
    notes = [line for line in result.stderr.splitlines() if WITHHELD in line]
    assert len(notes) == 1 and str(index) in notes[0], result.stderr
    assert "Traceback" not in result.output
    assert snapshot(index) == before, "not one byte of the index changed"
    assert snapshot(mine) == users, "nor of the user's files"
    assert stored_laws(index, encoder) == set(TEXTS)


def test_replace_removes_the_laws_not_given_when_every_source_was_read(built, encoder, tmp_path) -> None:
    laws, healthy = built
    index = tmp_path / "idx"
    shutil.copytree(healthy, index)
    given = [str(laws / "BOE-A-2099-1.txt"), str(laws / "BOE-A-2099-2.txt")]
    result = runner.invoke(app, ["index", *given, "--replace", "--index", str(index)])
    assert result.exit_code == 0, result.output
    assert WITHHELD not in result.output
    assert stored_laws(index, encoder) == {"BOE-A-2099-1", "BOE-A-2099-2"}


# --- the property ----------------------------------------------------------------------------------------------

KINDS = ("good", "changed", "omitted", "missing", "empty", "broken", "unreadable")
UNREAD = {"missing", "empty", "broken", "unreadable"}
EXAMPLES = int(os.environ.get("LEGALSEARCH_FUZZ_EXAMPLES", "12"))


@settings(
    max_examples=EXAMPLES, deadline=None, derandomize="LEGALSEARCH_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(
    kinds=st.fixed_dictionaries({boe_id: st.sampled_from(KINDS) for boe_id in TEXTS}),
    extra=st.sampled_from([None, "missing-path", "empty-folder", "missing-id-list"]),
)
def test_no_law_whose_source_was_not_read_ever_disappears(built, encoder, tmp_path_factory, monkeypatch, kinds, extra):
    _, healthy = built
    work = tmp_path_factory.mktemp("case")
    index = work / "idx"
    shutil.copytree(healthy, index)
    sources, unreadable = [], set()
    for boe_id, kind in kinds.items():
        path = work / f"{boe_id}.txt"
        text = TEXTS[boe_id]
        if kind == "omitted":
            continue
        if kind == "changed":
            text = text.replace("prueba", "prueba revisada")
        if kind != "missing":
            path.write_bytes(b"" if kind == "empty" else b"%PDF-1.4 rota" if kind == "broken" else text.encode())
        if kind == "unreadable":
            unreadable.add(str(path))
        sources.append(str(path))
    if extra == "missing-path":
        sources.append(str(work / "no-such"))
    elif extra == "empty-folder":
        (work / "empty").mkdir()
        sources.append(str(work / "empty"))
    elif extra == "missing-id-list":
        sources.append("BOE-A-2099-99999")  # an id the fetcher cannot deliver (offline)
    real_sha256 = indexing.sha256_file

    def sha256_file(path):
        if str(path) in unreadable:
            raise PermissionError(13, "Permission denied", str(path))
        return real_sha256(path)

    monkeypatch.setattr(indexing, "sha256_file", sha256_file)
    before = stored_laws(index, encoder)
    try:
        report = indexing.build(sources, index, encoder=encoder, max_tokens=96, replace=True)
    except indexing.NothingToIndex:
        report = None
    after = stored_laws(index, encoder)
    failed = {b for b, kind in kinds.items() if kind in UNREAD} or (extra is not None)
    for boe_id, kind in kinds.items():
        if kind in UNREAD or (kind == "omitted" and failed):
            assert boe_id in after, f"{boe_id} ({kind}) disappeared; sources {kinds}, extra {extra}"
        elif kind == "omitted":
            assert boe_id not in after, "with every source read, --replace drops what was not given"
        else:
            assert boe_id in after
    assert after <= before
    if report is not None:
        assert report.replace_withheld == bool(failed)
