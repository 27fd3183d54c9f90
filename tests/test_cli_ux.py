"""What the user reads: help that keeps every default and environment variable, no third-party noise, progress
lines in logs, and an int8 request on a float index refused before anything is quantised."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch.cli import app
from legalsearch.progress import PlainProgress, duration

runner = CliRunner()


def test_help_shows_every_default_and_environment_variable() -> None:
    index_help = runner.invoke(app, ["index", "--help"], terminal_width=200).stdout
    for shown in ("[env LEGALSEARCH_INDEX; default indexes/default]", "[env LEGALSEARCH_MODEL]",
                  "[env LEGALSEARCH_CACHE; default corpora/cache]", "pip install 'legalsearch[ray]'",
                  "[default: --set basico]", "[default: 16; x>=1]"):  # fmt: skip
        assert shown in " ".join(index_help.split()), shown
    main_help = " ".join(runner.invoke(app, ["--help"], terminal_width=200).stdout.split())
    for variable in ("LEGALSEARCH_INDEX", "LEGALSEARCH_CACHE", "LEGALSEARCH_MODEL", "LEGALSEARCH_MODELS",
                     "LEGALSEARCH_BOE_API"):  # fmt: skip
        assert variable in main_help


def test_plain_progress_prints_every_ten_percent_or_ten_seconds_with_rate_and_time_left() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = PlainProgress(lines.append, {"embed": "Embedding chunks"}, clock=lambda: now[0])
    progress("embed", 0, 1000)
    now[0] = 1.0
    progress("embed", 10, 1000)
    assert lines == [], "quiet during the first seconds: short runs stay one line"
    for done in range(20, 1001, 10):  # 10 chunks a second
        now[0] = done / 10
        progress("embed", done, 1000)
    assert len(lines) == 11, lines  # once past the quiet seconds, then every 10 % more, and the last
    assert lines[0].endswith("Embedding chunks: 20/1,000 (2%), 10.0/s, about 1 min 38 s left")
    assert lines[1].endswith("Embedding chunks: 120/1,000 (12%), 10.0/s, about 1 min 28 s left")
    assert lines[-1].endswith("Embedding chunks: 1,000/1,000 (100%), done in 1 min 40 s")
    lines.clear()
    slow = PlainProgress(lines.append, clock=lambda: now[0])
    for second in range(0, 61):  # one item a minute: a line every 10 s
        now[0] = 200.0 + second
        slow("write", 0, 100)
    assert len(lines) == 6 and "write: 0/100 (0%)" in lines[0]
    assert duration(7322) == "2 h 02 min"


def _copy_model(tiny_model: Path, tmp_path: Path) -> Path:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model, ignore=shutil.ignore_patterns("onnx", "openvino"))
    return model


def test_a_real_run_shows_no_third_party_noise(tiny_model, laws_dir, tmp_path) -> None:
    """`legalsearch index` in a fresh process, exporting the model to OpenVINO on the way (where the tracer
    warnings and "Could not infer…" came from): stderr holds our own notes and nothing else."""
    model = _copy_model(tiny_model, tmp_path)
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    run = subprocess.run(
        [sys.executable, "-m", "legalsearch", "index", str(laws_dir), "--index", str(tmp_path / "idx"),
         "--model", str(model)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (model / "openvino" / "openvino_model.xml").exists(), "the export did run"
    assert [line for line in run.stderr.splitlines() if line.strip() and not line.startswith("note:")] == []
    ask = subprocess.run(
        [sys.executable, "-m", "legalsearch", "ask", "vacaciones", "--index", str(tmp_path / "idx")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert ask.returncode == 0 and ask.stderr.strip() == "", ask.stderr


def test_int8_on_a_float_index_is_refused_before_any_quantisation(tiny_model, laws_dir, tmp_path) -> None:
    model = _copy_model(tiny_model, tmp_path)
    index = tmp_path / "idx"
    result = runner.invoke(app, ["index", str(laws_dir), "--index", str(index), "--model", str(model),
                                 "--backend", "torch", "--dims", "32"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (laws_dir / "BOE-A-2099-3.txt").write_text("Ley 3/2099. BOE-A-2099-3\nArtículo 1. Uno.\nTexto.\n", encoding="utf-8")
    for args in (["index", str(laws_dir), "--index", str(index), "--precision", "int8"],
                 ["ask", "vacaciones", "--index", str(index), "--precision", "int8"]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "embedded with torch fp32" in result.stderr, result.output
    assert not (model / "openvino").exists() and not (model / "onnx").exists(), "nothing was exported or quantised"


@pytest.mark.parametrize("argument", ["--verify", "--no-verify"])
def test_info_verify_has_its_own_line(argument, tiny_model, laws_dir, tmp_path) -> None:
    index = tmp_path / "idx"
    assert runner.invoke(app, ["index", str(laws_dir), "--index", str(index), "--model", str(tiny_model),
                               "--dims", "32"]).exit_code == 0  # fmt: skip
    lines = runner.invoke(app, ["info", "--index", str(index), argument]).stdout.splitlines()
    verified = [line for line in lines if line.startswith("checksums")]
    assert verified == (
        ["checksums  ok: all 7 segment files match their sha256, and the catalogue passes SQLite's integrity check"]
        if argument == "--verify"
        else []
    )
