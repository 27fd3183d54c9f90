"""`--max-tokens` above what the model reads is capped at the model's maximum, with a note; the capped budget is
what the manifest records, and asking for it again changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from legalsearch.cli import app
from legalsearch.embedding import load_encoder

runner = CliRunner()


def test_max_tokens_above_the_model_is_capped_with_a_note(tiny_model, laws_dir, tmp_path: Path) -> None:
    limit = load_encoder(str(tiny_model)).info.max_seq_length
    index = tmp_path / "idx"
    args = ["index", str(laws_dir), "--index", str(index), "--max-tokens", "100000"]
    result = runner.invoke(app, [*args, "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "--max-tokens 100,000" in line]
    assert len(notes) == 1 and f"capped at its {limit:,} tokens" in notes[0], result.stderr
    manifest = json.loads((index / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["chunking"]["max_tokens"] == limit, "the manifest records the budget used"
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "up to date" in again.stdout, "the same request is no change: no rewrite"
    assert "capped at" in again.stderr
