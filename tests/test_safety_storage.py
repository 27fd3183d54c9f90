"""Storage that fails the writer: a full disk during an update, a first build, a rewrite or a merge, and
read-only storage, are one line naming the disk (and the space needed) with nothing left behind — no stray lock,
no building folder, not one byte of the index changed; `--index` given as a link is resolved once: the real
folder is locked, updated and replaced, never the link."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch import segments, store
from legalsearch.cli import app
from legalsearch.search import LegalSearch

from .test_safety import one_error_line, snapshot

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
NEW_LAW = "Ley 9/2099, de prueba. BOE-A-2099-9\nArtículo 1. Objeto.\nEl objeto de esta ley es probar.\n"
LONG_LAW = "Ley 9/2099, de prueba. BOE-A-2099-9\n" + "".join(
    f"Artículo {i}. Objeto {i}.\nEl objeto {i} de esta ley es probar que el catálogo crece {'mucho ' * 40}.\n"
    for i in range(1, 41)
)


def _index(tiny_model: Path, laws: Path, index: Path, *more: str) -> None:
    result = runner.invoke(app, ["index", str(laws), "--index", str(index), "--model", str(tiny_model), *more])
    assert result.exit_code == 0, result.output


def error_line(result) -> str:
    """The one error line of a run (progress notes aside), with no traceback."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def _beside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _sqlite_full(real_open_writer):
    """A catalogue that cannot grow by one page: SQLite's own 'database or disk is full' (the catalogue was
    vacuumed: no free page to reuse)."""

    def open_writer(path):
        connection = real_open_writer(path)
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        return connection

    return open_writer


def _without_sqlite_bookkeeping(files: dict[str, bytes]) -> dict[str, bytes]:
    """Every file of an index but SQLite's own -wal/-shm (written and removed as connections open and close)."""
    return {name: data for name, data in files.items() if not name.endswith(("-wal", "-shm"))}


@pytest.mark.parametrize(
    ("run", "where"),
    [(run, "segment-files") for run in ("update", "first-build", "rewrite", "merge")]
    + [(run, "catalogue") for run in ("update", "first-build", "rewrite")],
)
def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tiny_model, laws_dir, tmp_path, monkeypatch, run, where):
    root = tmp_path / "disk"
    root.mkdir()
    index = root / "idx"
    if run != "first-build":
        _index(tiny_model, laws_dir, index, "--dims", "32")
    if run == "merge":
        (laws_dir / "BOE-A-2099-9.txt").write_text(NEW_LAW, encoding="utf-8")
        _index(tiny_model, laws_dir, index)
    (laws_dir / "BOE-A-2099-9.txt").write_text(LONG_LAW, encoding="utf-8")
    if index.exists():
        connection = sqlite3.connect(index / "legalsearch.sqlite")
        connection.execute("VACUUM")
        connection.close()
    before, beside = (snapshot(index) if index.exists() else None), _beside(root)
    if where == "segment-files":
        monkeypatch.setattr(segments.np, "save", _no_space)
    else:
        monkeypatch.setattr(store, "open_writer", _sqlite_full(store.open_writer))
    args = {"update": [str(laws_dir)], "first-build": [str(laws_dir), "--model", str(tiny_model)],
            "rewrite": [str(laws_dir), "--dims", "64,32"], "merge": ["--compact"]}[run]  # fmt: skip
    result = runner.invoke(app, ["index", *args, "--index", str(index)])
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "is full" in line and "free, this run needs about" in line and str(index) in line, line
    disk = Path(line.split("the disk that holds it (")[1].split(")")[0])
    assert disk.is_dir() and os.path.ismount(disk), "it names the disk"
    assert _beside(root) == beside, "no lock, no building folder, nothing new beside the index"
    if before is None:
        assert not index.exists()
    else:
        after = _without_sqlite_bookkeeping(snapshot(index))
        assert after == _without_sqlite_bookkeeping(before), "not one byte of the index changed"
        assert not [p for p in (index / "segments").iterdir() if p.name.startswith(".")], "no segment being built"
        assert LegalSearch.open(index).search("vacaciones", k=1, mode="lexical")


def test_no_lock_file_is_left_beside_the_index(tiny_model, laws_dir, tmp_path) -> None:
    _index(tiny_model, laws_dir, tmp_path / "idx")
    (laws_dir / "BOE-A-2099-9.txt").write_text(NEW_LAW, encoding="utf-8")
    _index(tiny_model, laws_dir, tmp_path / "idx")
    assert _beside(tmp_path) == ["idx", "laws"]


# --- --index through a link -----------------------------------------------------------------------------------


def test_a_link_to_an_empty_folder_becomes_an_index_behind_the_link(tiny_model, laws_dir, tmp_path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    _index(tiny_model, laws_dir, link)
    assert link.is_symlink() and link.resolve() == real and store.is_index(real)
    assert _beside(tmp_path) == ["laws", "link", "real"]


def test_a_rewrite_through_a_link_replaces_the_target_not_the_link(tiny_model, laws_dir, tmp_path) -> None:
    real = tmp_path / "real"
    link = tmp_path / "link"
    _index(tiny_model, laws_dir, real, "--dims", "32")
    link.symlink_to(real, target_is_directory=True)
    _index(tiny_model, laws_dir, link, "--dims", "64,32")
    assert link.is_symlink() and link.resolve() == real, "the link is still the user's link"
    assert store.read_manifest(real)["dims"] == [64, 32], "the target was rewritten"
    assert _beside(tmp_path) == ["laws", "link", "real"], "no .old or .building left beside either"


HOLD = """
import sys, time
from pathlib import Path
from legalsearch import store
with store.WriterLock(Path(sys.argv[1])):
    print("HELD", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("holder_via", ["link", "real"])
def test_a_link_and_the_real_path_share_one_writer_lock(tiny_model, laws_dir, tmp_path, holder_via) -> None:
    real = tmp_path / "real"
    link = tmp_path / "link"
    _index(tiny_model, laws_dir, real)
    link.symlink_to(real, target_is_directory=True)
    held, other = (link, real) if holder_via == "link" else (real, link)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD), str(held)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "HELD"
        (laws_dir / "BOE-A-2099-9.txt").write_text(NEW_LAW, encoding="utf-8")
        result = runner.invoke(app, ["index", str(laws_dir), "--index", str(other)])
        assert result.exit_code == 1
        assert "another legalsearch is writing this index" in one_error_line(result)
    finally:
        holder.kill()
        holder.wait()


# --- read-only storage and a real full disk (a mount namespace: skipped where unshare is not allowed) ----------


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _unshare_works(), reason="needs `unshare -rm` (user and mount namespaces)")


def _in_namespace(script: str, tmp_path: Path) -> str:
    path = tmp_path / "namespace.sh"
    path.write_text(script, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["unshare", "-rm", "sh", str(path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_mounts
def test_read_only_storage_answers_and_refuses_writes_before_embedding(tiny_model, laws_dir, tmp_path) -> None:
    source = tmp_path / "src"
    _index(tiny_model, laws_dir, source / "idx")
    for leftover in (source / "idx").glob("legalsearch.sqlite-*"):
        leftover.unlink()  # a copied or archived index: no -wal, no -shm
    before = snapshot(source)
    (laws_dir / "BOE-A-2099-9.txt").write_text(NEW_LAW, encoding="utf-8")
    ro = tmp_path / "ro"
    ro.mkdir()
    legalsearch = f"{sys.executable} -m legalsearch"
    out = _in_namespace(textwrap.dedent(f"""
        mount --bind {source} {ro} && mount -o remount,ro,bind {ro} || exit 9
        echo "== ask"; {legalsearch} ask "vacaciones anuales" --index {ro}/idx --mode lexical --json 2>&1; echo "rc=$?"
        echo "== index"; {legalsearch} index {laws_dir} --index {ro}/idx 2>&1; echo "rc=$?"
        echo "== new"; {legalsearch} index {laws_dir} --index {ro}/new --model {tiny_model} 2>&1; echo "rc=$?"
    """), tmp_path)  # fmt: skip
    ask, index, new = (part.strip().splitlines() for part in out.split("== ")[1:])
    assert ask[-1] == "rc=0" and "BOE-A-2099-1" in "\n".join(ask), ask
    for lines in (index, new):
        assert lines[-1] == "rc=1" and len(lines) == 3, lines  # the header, one line, the exit status
        assert "read-only storage" in lines[1] and "read-only file system" in lines[1], lines
        assert "embedding" not in "\n".join(lines).lower()
    assert snapshot(source) == before, "not one byte changed"
    assert _beside(source) == ["idx"]


@needs_mounts
def test_a_really_full_disk_is_one_line_and_leaves_nothing_behind(tiny_model, laws_dir, tmp_path) -> None:
    built = tmp_path / "built"
    _index(tiny_model, laws_dir, built / "idx")
    (laws_dir / "BOE-A-2099-9.txt").write_text(NEW_LAW * 40, encoding="utf-8")
    disk = tmp_path / "disk"
    disk.mkdir()
    report = tmp_path / "report"
    report.mkdir()
    legalsearch = f"{sys.executable} -m legalsearch"
    out = _in_namespace(textwrap.dedent(f"""
        mount -t tmpfs -o size=4m tmpfs {disk} || exit 9
        cp -a {built}/idx {disk}/idx
        free=$(df --output=avail -B1 {disk} | tail -1)
        head -c $((free - 40960)) /dev/zero > {disk}/filler 2>/dev/null
        (cd {disk} && find . -type f | sort | xargs sha256sum) > {report}/before
        {legalsearch} index {laws_dir} --index {disk}/idx 2>&1; echo "rc=$?"
        (cd {disk} && find . -type f | sort | xargs sha256sum) > {report}/after
        ls -A {disk} > {report}/beside
    """), tmp_path)  # fmt: skip
    lines = out.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert lines[-1] == "rc=1" and len(errors) == 1 and "Traceback" not in out, out
    assert "is full" in errors[0] and f"({disk})" in errors[0] and "this run needs about" in errors[0], out
    before = (report / "before").read_text().splitlines()
    after = (report / "after").read_text().splitlines()
    strip = [line for line in before if not line.endswith(("-wal", "-shm"))]
    assert [line for line in after if not line.endswith(("-wal", "-shm"))] == strip, "every byte as it was"
    assert (report / "beside").read_text().split() == ["filler", "idx"], "no lock, no building folder"
