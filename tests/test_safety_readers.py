"""Long-lived readers follow every commit: a `LegalSearch` and the HTTP server, queried from threads without a
pause while another process commits updates, merges and a rewrite, answer every request (no error, no 500) and,
once a commit is announced, never with a wording older than it. (A process that opened the catalogue with
anything but SQLite dropped its own locks, and a writer then deleted the `-wal` under it.)"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from legalsearch import indexing
from legalsearch.embedding import load_encoder
from legalsearch.search import LegalSearch

REPO = Path(__file__).resolve().parents[1]
LAW = "BOE-A-2099-7"
ROUNDS = ["update"] * 3 + ["compact"] + ["update"] * 3 + ["compact", "rewrite", "update", "update", "compact"]


def wording(i: int) -> str:
    return (
        f"Ley 7/2099, de redacciones sucesivas. {LAW}\n"
        "Artículo 1. Preaviso.\n"
        f"El plazo de preaviso será el de la redacción número {i} de este artículo.\n"
        "Artículo 2. Fianza.\n"
        "Será obligatoria la prestación de fianza en metálico.\n"
    )


WRITER = """
import sys
from pathlib import Path
from legalsearch import indexing, store
from legalsearch.embedding import load_encoder

model, index, law, rounds = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4].split(",")
encoder = load_encoder(model)
texts = [line.rstrip("\\n").replace("\\\\n", "\\n") for line in sys.stdin.readline().split("\\t")]
for i, kind in enumerate(rounds, 1):
    law.write_text(texts[i], encoding="utf-8")
    dims = [64, 32] if kind == "rewrite" else None
    indexing.build([str(law)], index, encoder=encoder, max_tokens=96, dims=dims)
    if kind == "compact":
        with store.WriterLock(index):
            store.compact(index)
    print(f"ROUND {i}", flush=True)
    if sys.stdin.readline().strip() != "next":
        break
"""


def version_of(text: str) -> int:
    return int(re.search(r"redacción número (\d+)", text).group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(base: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # an HTTP error raises: it is recorded
        return json.loads(response.read())


@pytest.fixture
def server():
    """Start `serve`'s app on a free loopback port for a `LegalSearch`; yields a function of it → base URL."""
    import uvicorn

    from legalsearch.server import create_app

    started = []

    def start(search: LegalSearch) -> str:
        port = free_port()
        config = uvicorn.Config(create_app(search), host="127.0.0.1", port=port, log_level="critical")
        instance = uvicorn.Server(config)
        thread = threading.Thread(target=instance.run, daemon=True)
        thread.start()
        started.append((instance, thread))
        deadline = time.monotonic() + 30
        while not instance.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start
    for instance, thread in started:
        instance.should_exit = True
        thread.join(timeout=10)


def test_readers_follow_every_commit_under_load(tiny_model, tmp_path, server) -> None:
    index, law = tmp_path / "idx", tmp_path / "laws" / f"{LAW}.txt"
    law.parent.mkdir()
    law.write_text(wording(0), encoding="utf-8")
    encoder = load_encoder(str(tiny_model))
    indexing.build([str(law)], index, encoder=encoder, max_tokens=96)
    search = LegalSearch.open(index, encoder=encoder)
    base = server(LegalSearch.open(index, encoder=encoder))
    floor = [0]  # the last commit announced and seen by a query: no later answer may be older
    errors: list[str] = []
    answered = [0]
    stop = threading.Event()

    def check(got: int, since: int, how: str) -> None:
        if got < since:
            errors.append(f"{how}: wording {got} after commit {since} was seen")
        answered[0] += 1

    def library_reader() -> None:
        while not stop.is_set():
            since = floor[0]
            try:
                check(version_of(search.article(LAW, "1")["text"]), since, "article")
                hits = search.search("plazo de preaviso redacción", k=2, mode="hybrid")
                check(max(version_of(h.text) for h in hits if h.article_id == "a1"), since, "search")
            except Exception as exc:  # every failure is the test's finding
                errors.append(f"library: {type(exc).__name__}: {exc}")

    def http_reader() -> None:
        while not stop.is_set():
            since = floor[0]
            try:
                check(version_of(http(base, f"/laws/{LAW}/articles/1")["text"]), since, "HTTP article")
                hits = http(base, "/search", {"query": "plazo de preaviso redacción", "k": 2, "mode": "lexical"})
                check(max(version_of(h["text"]) for h in hits["hits"] if h["article_id"] == "a1"), since, "HTTP search")
            except Exception as exc:
                errors.append(f"HTTP: {type(exc).__name__}: {exc}")

    readers = [
        threading.Thread(target=f, daemon=True) for f in (library_reader, library_reader, http_reader, http_reader)
    ]
    for thread in readers:
        thread.start()
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER), encoding="utf-8")
    writer = subprocess.Popen(
        [sys.executable, str(script), str(tiny_model), str(index), str(law), ",".join(ROUNDS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        writer.stdin.write("\t".join(wording(i).replace("\n", "\\n") for i in range(len(ROUNDS) + 1)) + "\n")
        writer.stdin.flush()
        for i in range(1, len(ROUNDS) + 1):
            assert writer.stdout.readline().strip() == f"ROUND {i}", "the writer committed"
            assert version_of(search.article(LAW, "1")["text"]) == i, f"the library reader follows commit {i}"
            assert version_of(http(base, f"/laws/{LAW}/articles/1")["text"]) == i, f"serve follows commit {i}"
            floor[0] = i
            time.sleep(0.2)  # let the readers query the new commit before the next one
            writer.stdin.write("next\n")
            writer.stdin.flush()
        assert writer.wait(timeout=60) == 0
    finally:
        stop.set()
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        for thread in readers:
            thread.join(timeout=30)
    assert not errors, f"{len(errors)} failed or stale answers, first: {errors[:3]}"
    assert answered[0] > 4 * len(ROUNDS), "the readers kept querying throughout"
    assert search.commit == http(base, "/health")["commit"] == search.manifest["commit"]


def test_opening_while_a_merge_removes_the_segments_just_listed_opens_the_next_commit(
    tiny_model, tmp_path, monkeypatch
) -> None:
    from legalsearch import search as search_module
    from legalsearch import store

    index, law = tmp_path / "idx", tmp_path / "laws" / f"{LAW}.txt"
    law.parent.mkdir()
    encoder = load_encoder(str(tiny_model))
    law.write_text(wording(2), encoding="utf-8")
    other = law.parent / "BOE-A-2099-8.txt"
    other.write_text(wording(5).replace(LAW, "BOE-A-2099-8").replace("Ley 7/", "Ley 8/"), encoding="utf-8")
    for source in (law, other):  # two segments
        indexing.build([str(source)], index, encoder=encoder, max_tokens=96)
    real_check_files = search_module.check_files
    merged = []

    def merge_first(path, manifest):  # a writer merges between the reader's listing and its opening the files
        if not merged:
            with store.WriterLock(path):
                merged.append(store.compact(path))
        return real_check_files(path, manifest)

    monkeypatch.setattr(search_module, "check_files", merge_first)
    search = LegalSearch.open(index, encoder=encoder)
    assert merged[0] and merged[0]["merged"] == 2, "the segments listed were merged away before they were opened"
    assert len(search.manifest["segments"]) == 1 and version_of(search.article(LAW, "1")["text"]) == 2
