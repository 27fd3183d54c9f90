"""The catalogue's schema as numbered migrations (`legalsearch.catalogue`): an index written before migrations were
numbered is migrated in place by the next writer and keeps every row; a migration killed halfway leaves the
catalogue as it was, and the next writer completes it; a catalogue a newer legalsearch wrote is refused with one
line, by writers and readers, and left untouched."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch import catalogue
from legalsearch.cli import app
from legalsearch.search import LegalSearch

from .test_safety import one_error_line, snapshot
from .test_safety_storage import NEW_LAW

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _index(tiny_model: Path, laws: Path, index: Path) -> None:
    result = runner.invoke(app, ["index", str(laws), "--index", str(index), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output


def _sql(database: Path, *statements: str) -> list:
    connection = sqlite3.connect(database)
    try:
        found = [connection.execute(s).fetchall() for s in statements]
        connection.commit()
        return found
    finally:
        connection.close()


def _version(database: Path) -> int:
    return _sql(database, "PRAGMA user_version")[0][0][0]


def _tables(database: Path) -> set[str]:
    return {r[0] for r in _sql(database, "SELECT name FROM sqlite_master WHERE type = 'table'")[0]}


def _rows(database: Path) -> dict[str, list]:
    return {t: _sql(database, f"SELECT * FROM {t} ORDER BY 1")[0] for t in sorted(_tables(database))}


def _as_before_migrations(database: Path, digests: bool) -> None:
    """The catalogue as the code before numbered migrations left it: no `user_version`; with `digests` False, as
    an index committed before the digests table existed."""
    _sql(database, "PRAGMA user_version = 0", *([] if digests else ["DROP TABLE digests"]))


def test_a_new_index_records_the_last_migration(tiny_model, laws_dir, tmp_path) -> None:
    database = tmp_path / "idx" / catalogue.DATABASE
    _index(tiny_model, laws_dir, tmp_path / "idx")
    assert _version(database) == catalogue.LATEST == len(catalogue.MIGRATIONS)
    assert {"laws", "articles", "chunks", "segments", "deleted", "sources", "norms", "syncs", "commits", "digests"} <= (
        _tables(database)
    )


@pytest.mark.parametrize("digests", [True, False], ids=["with-digests", "before-digests"])
def test_an_index_from_before_migrations_is_migrated_in_place(tiny_model, laws_dir, tmp_path, digests) -> None:
    index = tmp_path / "idx"
    database = index / catalogue.DATABASE
    _index(tiny_model, laws_dir, index)
    _as_before_migrations(database, digests)
    before = _rows(database)
    segments_before = sorted(p.name for p in (index / "segments").iterdir())
    catalogue.open_writer(database).close()
    assert _version(database) == catalogue.LATEST
    after = _rows(database)
    assert "digests" in after
    assert {t: rows for t, rows in after.items() if t in before} == before, "every row kept as it was"
    assert sorted(p.name for p in (index / "segments").iterdir()) == segments_before, "not rewritten: in place"
    (laws_dir / "BOE-A-2099-9.txt").write_text(NEW_LAW, encoding="utf-8")
    _index(tiny_model, laws_dir, index)  # an update on the migrated catalogue
    search = LegalSearch.open(index)
    assert search.search("objeto de esta ley es probar", k=1, mode="lexical")[0].boe_id == "BOE-A-2099-9"
    result = runner.invoke(app, ["info", "--index", str(index), "--verify"])
    assert result.exit_code == 0, result.output


def test_the_next_writer_migrates_an_old_index(tiny_model, laws_dir, tmp_path) -> None:
    index = tmp_path / "idx"
    database = index / catalogue.DATABASE
    _index(tiny_model, laws_dir, index)
    _as_before_migrations(database, digests=False)
    (laws_dir / "BOE-A-2099-9.txt").write_text(NEW_LAW, encoding="utf-8")
    _index(tiny_model, laws_dir, index)
    assert _version(database) == catalogue.LATEST
    assert {r[0] for r in _sql(database, "SELECT boe_id FROM digests")[0]} == {"BOE-A-2099-9"}, (
        "the law committed after the migration has its digest"
    )


KILLED = """
import sys
from pathlib import Path
from legalsearch import catalogue
catalogue.open_writer(Path(sys.argv[1]))
"""


def _killed_at(stage: str, database: Path) -> None:
    env = {**os.environ, "LEGALSEARCH_KILL_AT": stage, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", KILLED, str(database)], env=env, capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr


def test_a_migration_killed_halfway_leaves_the_catalogue_as_it_was(tiny_model, laws_dir, tmp_path) -> None:
    index = tmp_path / "idx"
    database = index / catalogue.DATABASE
    _index(tiny_model, laws_dir, index)
    _as_before_migrations(database, digests=False)
    before = _rows(database)
    _killed_at("migration-2", database)
    assert _version(database) == 0 and "digests" not in _tables(database)
    assert _rows(database) == before
    assert LegalSearch.open(index).search("vacaciones", k=1, mode="lexical"), "the index still answers"
    catalogue.open_writer(database).close()  # the next writer completes it
    assert _version(database) == catalogue.LATEST and "digests" in _tables(database)


def test_a_first_migration_killed_halfway_creates_no_table(tmp_path) -> None:
    database = tmp_path / catalogue.DATABASE
    _killed_at("migration-1", database)
    assert _tables(database) == set() and _version(database) == 0
    catalogue.open_writer(database).close()
    assert "commits" in _tables(database) and _version(database) == catalogue.LATEST


def test_a_catalogue_from_a_newer_legalsearch_is_refused_with_one_line(tiny_model, laws_dir, tmp_path) -> None:
    index = tmp_path / "idx"
    database = index / catalogue.DATABASE
    _index(tiny_model, laws_dir, index)
    _sql(database, f"PRAGMA user_version = {catalogue.LATEST + 1}")
    before = snapshot(index)
    (laws_dir / "BOE-A-2099-9.txt").write_text(NEW_LAW, encoding="utf-8")
    for command in (["index", str(laws_dir)], ["ask", "vacaciones"], ["index", "--compact"]):
        result = runner.invoke(app, [*command, "--index", str(index)])
        assert result.exit_code != 0, result.output
        line = one_error_line(result)
        assert f"catalogue schema {catalogue.LATEST + 1}" in line and "newer legalsearch" in line, line
    after = snapshot(index)
    assert {k: v for k, v in after.items() if not k.endswith(("-wal", "-shm"))} == {
        k: v for k, v in before.items() if not k.endswith(("-wal", "-shm"))
    }, "nothing written"
    assert _version(database) == catalogue.LATEST + 1


def test_the_local_writer_answers_what_a_run_asks(tiny_model, laws_dir, tmp_path) -> None:
    from legalsearch.engines import StoreSpec, open_writer
    from legalsearch.store import row_vectors

    index = tmp_path / "idx"
    _index(tiny_model, laws_dir, index)
    with open_writer(str(index)) as writer:
        assert writer.exists() and writer.manifest()["counts"]["laws"] == 2
        states = writer.law_states()
        assert set(states) == {"BOE-A-2099-1", "BOE-A-2099-2"} and all(s["units"] >= 1 for s in states.values())
        hashes, rows = zip(*_sql(index / catalogue.DATABASE, "SELECT content_hash, row FROM chunks")[0], strict=True)
        known = writer.known_vectors(set(hashes) | {"not-a-hash"})
        assert set(known) == set(hashes)
        stored = row_vectors(index, writer.manifest(), list(rows))
        for content_hash, vector in zip(hashes, stored, strict=True):
            assert (known[content_hash] == vector).all()
        writer.record_norms([("BOE-A-2099-1", "20240101", "indexed", "2026-01-01T00:00:00Z", None)])
        writer.log_sync("2026-01-01T00:00:00Z", {"listing": "full", "new": ["BOE-A-2099-1"]})
        assert writer.norm_states()["BOE-A-2099-1"]["state"] == "indexed"
        assert writer.sync_runs() == [("2026-01-01T00:00:00Z", {"listing": "full", "new": ["BOE-A-2099-1"]})]
    assert LegalSearch.open(index).syncs()[-1]["new"] == ["BOE-A-2099-1"], "readers see what the writer logged"
    assert open_writer(StoreSpec.parse(str(index))).spec.engine == "local"


def test_every_index_option_takes_a_store_address_and_legalsearch_store(tiny_model, laws_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("LEGALSEARCH_STORE", raising=False)
    stored = tmp_path / "stored"
    result = runner.invoke(app, ["index", str(laws_dir), "--store", str(stored), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{stored}: 2 laws"), result.stdout
    monkeypatch.setenv("LEGALSEARCH_STORE", str(stored))  # the default when neither --index nor --store is given
    result = runner.invoke(app, ["ask", "vacaciones", "--mode", "lexical"])
    assert result.exit_code == 0 and "BOE-A-2099" in result.stdout, result.output
    (laws_dir / "BOE-A-2099-9.txt").write_text(NEW_LAW, encoding="utf-8")
    result = runner.invoke(app, ["index", str(laws_dir)])
    assert result.exit_code == 0 and result.stdout.startswith(f"{stored}: 3 laws"), result.output
    assert not (tmp_path / "indexes").exists(), "LEGALSEARCH_STORE comes before LEGALSEARCH_INDEX"
    result = runner.invoke(app, ["index", "--compact", "--index", str(stored)])
    assert result.exit_code == 0 and result.stdout.startswith(f"{stored}: "), result.output
    result = runner.invoke(app, ["index", str(laws_dir), "--store", "qdrant://reader:s3cret@localhost:6333/leyes"])
    assert result.exit_code != 0
    assert "QDRANT_API_KEY" in one_error_line(result) and "s3cret" not in result.output
