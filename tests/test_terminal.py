"""A law whose text carries terminal escape sequences (ESC[2J, OSC 8 links, OSC 52 clipboard writes, C1
controls) never drives the user's terminal: every command prints it cleaned, in a pipe and in a tty, and JSON
keeps the data while escaping what a terminal would obey."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.table import Table
from typer.testing import CliRunner

from legalsearch import indexing
from legalsearch.cli import app
from legalsearch.terminal import SafeConsole, clean, json_text

HOSTILE = (
    "Ley 7/2099, de pruebas \x1b]8;;http://evil.example/\x1b\\hostiles\x1b]8;;\x1b\\. BOE-A-2099-7\n"
    "Artículo 1. Vacaciones\x1b[2J.\n"
    "El trabajador tendrá derecho a vacaciones \x1b[31mretribuidas\x1b[0m de treinta días\x9b2J naturales\x07.\n"
    "Artículo 2. Mayoría de edad.\n"
    "Los españoles son mayores de edad \x1b]52;c;aGFjaw==\x07a los dieciocho años\x1bc.\u202e\n"
)
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")


def assert_clean(output: str, data: bool = False) -> None:
    """No raw control character; and unless `data` (JSON, which keeps the text escaped), no rest of a sequence."""
    assert not RAW_CONTROL.search(output), repr(RAW_CONTROL.search(output)[0])
    for leftover in () if data else ("2J", "evil.example", "aGFjaw", "31m"):
        assert leftover not in output, leftover


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_model) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    source = folder / "BOE-A-2099-7.txt"
    source.write_text(HOSTILE, encoding="utf-8")
    index = folder / "idx"
    indexing.build([str(source)], index, model=str(tiny_model), dims=[32], backend="torch", precision="fp32")
    return source, index


def test_clean_removes_escape_sequences_whole_and_keeps_newlines_and_tabs() -> None:
    assert clean("a\x1b[2Jb\x1b[1;31mc\x1b[0m") == "abc"
    assert clean("see \x1b]8;;http://evil.example/\x1b\\this\x1b]8;;\x1b\\ link") == "see this link"
    assert clean("x\x1b]52;c;aGFjaw==\x07y") == "xy"
    assert clean("one\r\ntwo\tthree\rfour\x08\x07") == "one\ntwo\tthreefour"
    assert clean("C1 \x9b2J csi, \x9d0;title\x9c osc, \x85 nel") == "C1  csi,  osc,  nel"
    assert clean("unterminated \x1b]8;;http://x\nnext line") == "unterminated \nnext line"
    assert clean("abc\u202edef") == "abcdef"
    assert clean("Artículo 1.º — «texto»") == "Artículo 1.º — «texto»"


def test_json_keeps_the_data_but_escapes_what_a_terminal_obeys() -> None:
    data = {"text": HOSTILE}
    text = json_text(data)
    assert not RAW_CONTROL.search(text)
    assert json.loads(text) == data, "a program reading the JSON gets the text as indexed"


def test_safe_console_cleans_tables_and_markup_but_keeps_its_own_colours() -> None:
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=True, color_system="standard", width=100)
    table = Table("id", "heading")
    table.add_row("a1", "Vacaciones\x1b[2J\x1b]8;;http://evil.example/\x1b\\")
    console.print(table)
    console.print("[bold]Art. 1[/bold] \x1b]52;c;aGFjaw==\x07texto\x9b2J")
    output = buffer.getvalue()
    assert "\x1b[1m" in output, "rich's own styles stay"
    without_styles = re.sub(r"\x1b\[[0-9;]*m", "", output)
    assert_clean(without_styles)
    assert "Vacaciones" in without_styles and "texto" in without_styles


def test_every_command_prints_a_hostile_law_cleaned_in_a_pipe(hostile) -> None:
    source, index = hostile
    runner = CliRunner()
    commands = [
        ["ask", "vacaciones retribuidas", "--index", str(index), "--mode", "lexical"],
        ["ask", "vacaciones retribuidas", "--index", str(index), "--mode", "lexical", "--context"],
        ["ask", "vacaciones retribuidas", "--index", str(index), "--mode", "lexical", "--json"],
        ["article", "BOE-A-2099-7", "1", "--index", str(index)],
        ["article", "BOE-A-2099-7", "art. 2", "--index", str(index), "--json"],
        ["parse", str(source)],
        ["parse", str(source), "--json"],
        ["info", "--index", str(index)],
    ]
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
        assert_clean(result.output, data="--json" in command)
        assert "retribuidas" in result.output or "dieciocho" in result.output or "hostiles" in result.output, command
    hits = json.loads(runner.invoke(app, commands[2]).stdout)
    assert "\x1b[31mretribuidas" in hits[0]["text"], "--json keeps the text as indexed, escaped"


def test_ask_in_a_terminal_prints_only_its_own_styles(hostile) -> None:
    _, index = hostile
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "legalsearch", "ask", "vacaciones retribuidas", "--index", str(index), "--mode",
         "lexical"],
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert process.wait(timeout=120) == 0
    output = b"".join(chunks).decode("utf-8").replace("\r\n", "\n")  # the terminal's own line ends
    assert "\x1b[" in output, "a terminal gets colours"
    assert_clean(re.sub(r"\x1b\[[0-9;]*m", "", output))
    assert "retribuidas" in output


def test_diff_and_changes_print_hostile_wordings_cleaned(tmp_path, tiny_model) -> None:
    """XML 1.0 forbids ESC but allows the C1 controls: the one-byte CSI and OSC of a doctored BOE API file."""
    source = (
        Path(__file__).resolve().parent.parent / "corpora" / "sample" / "laws" / "xml" / "BOE-A-1978-31229.texto.xml"
    )
    xml = source.read_text(encoding="utf-8")
    reform = "1. Todas las Administraciones Públicas adecuarán"
    assert xml.count(reform) == 1
    xml = xml.replace(reform, "1. Todas las Administraciones\x9b2J\x9d8;;http://evil.example/\x9c Públicas adecuarán")
    (tmp_path / "BOE-A-1978-31229.xml").write_text(xml, encoding="utf-8")
    index = tmp_path / "idx"
    indexing.build([str(tmp_path / "BOE-A-1978-31229.xml")], index, model=str(tiny_model), dims=[32], history=True,
                   backend="torch", precision="fp32")  # fmt: skip
    runner = CliRunner()
    for command in (
        ["diff", "CE", "135", "--from", "2005-01-01", "--to", "2020-01-01", "--index", str(index)],
        ["changes", "--since", "2011-01-01", "--index", str(index)],
        ["article", "CE", "135", "--index", str(index)],
        ["ask", "estabilidad presupuestaria de las Administraciones", "--index", str(index), "--mode", "lexical"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
        assert_clean(result.output)
    diff = runner.invoke(app, ["diff", "CE", "135", "--from", "2005-01-01", "--to", "2020-01-01", "--index",
                               str(index)]).stdout  # fmt: skip
    assert "{+ Todas las Administraciones Públicas" in diff
