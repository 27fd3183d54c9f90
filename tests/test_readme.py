"""Every `legalsearch …` command and Python example of the README, and every docstring example, runs as written.

The commands run in the README's order in one folder that holds the repository's `corpora/` (the real sample),
with the tiny random model (LEGALSEARCH_MODEL) and the basic set's laws in the fetch cache, as a first `legalsearch
index` would have downloaded them (boe.es is unreachable here). Commands that need the network, a model that
cannot be had here, or a server that runs until stopped are listed in SKIPPED_BY_DESIGN with the reason; a README
command neither run nor listed fails the test, and so does a listed command the README no longer has.
"""

from __future__ import annotations

import doctest
import importlib
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch.cli import app

from .conftest import CORPORA, REPO

README = REPO / "README.md"
runner = CliRunner()

# The basic set (legalsearch/sets/basico.txt) as the fetcher caches it: <cache>/<BOE id>.xml, whatever the format.
BASIC_SET = {
    "BOE-A-1978-31229": "xml/BOE-A-1978-31229.texto.xml",
    "BOE-A-2015-11430": "xml/BOE-A-2015-11430.xml",
    "BOE-A-2015-10565": "pdf/BOE-A-2015-10565.pdf",
    "BOE-A-1994-26003": "pdf/BOE-A-1994-26003.pdf",
}
# Command prefix → why it is not run here.
SKIPPED_BY_DESIGN = {
    "legalsearch index --set codigos": "downloads the main codes from boe.es; `index` of a set runs here on the basic "
    "set (the first command) from the cache",
    "legalsearch sync": "mirrors boe.es; tests/test_sync.py runs every sync path against the local stand-in",
    "legalsearch eval --pairs pairs.jsonl --model DIR": "pairs.jsonl and DIR stand for the user's own files",
    "legalsearch index corpora/ --model models/bge-m3-es-legal": "needs the legal model, which cannot be downloaded "
    "here; the same command with the test model is the README's `index corpora/sample/laws`",
    "legalsearch index --set justicio --distributed ray": "a Ray cluster and the 40 laws from boe.es; "
    "tests/test_distributed.py runs --distributed ray on a local instance",
    "legalsearch serve": "a server that runs until stopped; tests/test_server_rag.py answers the same requests",
}


# Modules whose docstrings hold examples (`>>>`); they run in the README's folder, on its quickstart index.
DOCSTRING_MODULES = (
    "legalsearch.search", "legalsearch.sources", "legalsearch.integrations.langchain",
    "legalsearch.integrations.llamaindex",
)  # fmt: skip


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def readme_commands() -> list[list[str]]:
    """The README's `legalsearch …` command lines as argument lists, comments dropped, in order."""
    lines = (line.strip() for block in code_blocks("bash") for line in block.splitlines())
    return [shlex.split(line, comments=True) for line in lines if line.startswith("legalsearch ")]


def skip_reason(command: list[str]) -> str | None:
    return next((why for prefix, why in SKIPPED_BY_DESIGN.items() if shlex.join(command).startswith(prefix)), None)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A folder like the repository's root: `corpora/` (the sample) and an empty `indexes/`."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "corpora").symlink_to(REPO / "corpora", target_is_directory=True)
    cache = folder / "cache"
    cache.mkdir()
    for boe_id, relative in BASIC_SET.items():
        shutil.copy(CORPORA / relative, cache / f"{boe_id}.xml")
    return folder


@pytest.fixture
def in_workspace(workspace: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("LEGALSEARCH_INDEX")  # the README's default: indexes/default under the current folder
    monkeypatch.setenv("LEGALSEARCH_CACHE", str(workspace / "cache"))
    monkeypatch.setenv("LEGALSEARCH_MODEL", str(tiny_model))
    return workspace


def test_every_readme_command_is_run_or_skipped_with_a_reason() -> None:
    commands = [shlex.join(c) for c in readme_commands()]
    assert len(commands) > 10, "the README's bash blocks were not found"
    for prefix in SKIPPED_BY_DESIGN:
        assert any(c.startswith(prefix) for c in commands), f"the README no longer has {prefix!r}: drop it here"


def test_the_readme_commands_run_in_order(in_workspace: Path) -> None:
    ran = []
    for command in readme_commands():
        if skip_reason(command):
            continue
        result = runner.invoke(app, command[1:])
        assert result.exit_code == 0, f"{shlex.join(command)}\n{result.output}"
        assert result.stdout.strip(), f"{shlex.join(command)} printed nothing"
        if "--json" in command:
            json.loads(result.stdout)
        ran.append(command)
    assert ran[0] == ["legalsearch", "index"], "the quickstart starts with `legalsearch index`"
    assert (in_workspace / "indexes" / "default" / "manifest.json").exists()
    assert (in_workspace / "indexes" / "ce" / "manifest.json").exists()
    assert (in_workspace / "runs" / "metrics.json").exists()


def test_the_readme_python_examples_run(in_workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built(in_workspace)
    examples = code_blocks("python")
    assert len(examples) >= 3
    for example in examples:
        namespace: dict = {}
        exec(compile(example, "README.md", "exec"), namespace)
        assert "search" in namespace or "docs" in namespace or "nodes" in namespace
    assert "https://www.boe.es/buscar/act.php?id=" in capsys.readouterr().out, "the API example prints its hits"


def built(workspace: Path) -> None:
    """The indexes the README's commands build, for a test run on its own."""
    if not (workspace / "indexes" / "default" / "manifest.json").exists():
        assert runner.invoke(app, ["index"]).exit_code == 0
    if not (workspace / "indexes" / "ce" / "manifest.json").exists():
        source = "corpora/sample/laws/xml/BOE-A-1978-31229.texto.xml"
        assert runner.invoke(app, ["index", source, "--index", "indexes/ce", "--history"]).exit_code == 0


def test_the_docstring_examples_run(in_workspace: Path) -> None:
    built(in_workspace)
    examples = 0
    for name in DOCSTRING_MODULES:
        module = importlib.import_module(name)
        runner_ = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        for test in doctest.DocTestFinder().find(module):
            runner_.run(test)
            examples += len(test.examples)
        assert runner_.failures == 0, f"{name}: a docstring example failed (its output is above)"
    assert examples >= 9
