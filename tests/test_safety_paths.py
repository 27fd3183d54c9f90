"""Every name read from an index (a segment in the catalogue, a file in `segment.json`, the index's own files)
must lead to a path inside it: `..`, an absolute path or a link that leads out makes the index damaged (one line),
and nothing outside it is read, merged or removed — asserted byte for byte on the user's files beside it."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch.cli import app
from legalsearch.testing import segment_folder

from .test_safety import one_error_line, snapshot

runner = CliRunner()


def _rename_segment(index: Path, name: str) -> None:
    connection = sqlite3.connect(index / "legalsearch.sqlite")
    with connection:
        connection.execute("UPDATE segments SET name = ?", (name,))
    connection.close()


def _victim(tmp: Path, segment: Path) -> Path:
    """A user's folder outside the index that looks like a segment (a copy of one) and holds their own file."""
    victim = tmp / "victim"
    shutil.copytree(segment, victim)
    (victim / "precious.txt").write_text("irreemplazable\n", encoding="utf-8")
    return victim


def catalogue_dotdot(index: Path, tmp: Path) -> None:
    _victim(tmp, segment_folder(index))
    _rename_segment(index, "../../victim")


def catalogue_absolute(index: Path, tmp: Path) -> None:
    _rename_segment(index, str(_victim(tmp, segment_folder(index))))


def segment_is_a_link(index: Path, tmp: Path) -> None:
    segment = segment_folder(index)
    victim = _victim(tmp, segment)
    shutil.rmtree(segment)
    segment.symlink_to(victim, target_is_directory=True)


def segments_folder_is_a_link(index: Path, tmp: Path) -> None:
    victim = tmp / "victim"
    shutil.copytree(index / "segments", victim)
    (victim / "precious.txt").write_text("irreemplazable\n", encoding="utf-8")
    shutil.rmtree(index / "segments")
    (index / "segments").symlink_to(victim, target_is_directory=True)


def file_entry_dotdot(index: Path, tmp: Path) -> None:
    secret = tmp / "victim"
    secret.mkdir()
    (secret / "shadow").write_text("root:secreto\n", encoding="utf-8")
    record_path = segment_folder(index) / "segment.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["files"]["../../../victim/shadow"] = {"bytes": 13, "sha256": "0" * 64}
    record_path.write_text(json.dumps(record), encoding="utf-8")


def vectors_are_a_link(index: Path, tmp: Path) -> None:
    vectors = segment_folder(index) / "vectors.f16.npy"
    victim = tmp / "victim"
    victim.mkdir()
    shutil.copy(vectors, victim / "vectors.f16.npy")
    vectors.unlink()
    vectors.symlink_to(victim / "vectors.f16.npy")


def catalogue_is_a_link(index: Path, tmp: Path) -> None:
    victim = tmp / "victim"
    victim.mkdir()
    shutil.move(index / "legalsearch.sqlite", victim / "legalsearch.sqlite")
    (index / "legalsearch.sqlite").symlink_to(victim / "legalsearch.sqlite")


CASES = [catalogue_dotdot, catalogue_absolute, segment_is_a_link, segments_folder_is_a_link, file_entry_dotdot,
         vectors_are_a_link, catalogue_is_a_link]  # fmt: skip


@pytest.mark.parametrize("craft", CASES, ids=[c.__name__ for c in CASES])
def test_names_leading_out_of_the_index_make_it_damaged(craft, tiny_model, laws_dir, tmp_path) -> None:
    index = tmp_path / "idx"
    result = runner.invoke(app, ["index", str(laws_dir), "--index", str(index), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    craft(index, tmp_path)
    outside = snapshot(tmp_path / "victim")
    (laws_dir / "BOE-A-2099-9.txt").write_text(
        "Ley 9/2099, de prueba. BOE-A-2099-9\nArtículo 1. Objeto.\nUna ley nueva.\n", encoding="utf-8"
    )
    for args in (
        ["info", "--index", str(index)],
        ["info", "--index", str(index), "--verify"],
        ["ask", "vacaciones anuales", "--index", str(index)],
        ["index", str(laws_dir), "--replace", "--index", str(index)],
        ["index", "--compact", "--index", str(index)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        line = one_error_line(result)
        assert "damaged" in line and "outside" in line, (args, line)
        assert "shadow" not in result.stdout and "irreemplazable" not in result.output
    assert snapshot(tmp_path / "victim") == outside, "not one byte outside the index was changed"
    assert (tmp_path / "victim").is_dir() and not (tmp_path / "victim").is_symlink()
