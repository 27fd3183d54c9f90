"""The query-encoder daemon of `legalsearch ask` (issue 25, item 5): the second ask gets its question's vector from a
per-user process that keeps the model loaded. Its vectors are the in-process ones; anything wrong with it, and the
ask encodes in-process; the Python API never uses it; it goes away when idle and leaves no socket behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from legalsearch import encoder_daemon
from legalsearch.cli import app
from legalsearch.embedding import load_encoder
from legalsearch.encoder_daemon import (
    DaemonEncoder,
    _receive,
    _send,
    daemon_encoder,
    daemon_key,
    running_daemons,
    stop_daemons,
)
from legalsearch.query_encoder import LeanPlan, QueryEncoder, lean_plan

from .conftest import CORPORA

REPO = Path(__file__).resolve().parent.parent
QUESTION = "¿Necesito permiso para soltar ejemplares de especies de caza?"
TEXTS = [
    "derecho de asilo",
    QUESTION,
    "El arrendatario podrá subarrendar la vivienda con el consentimiento escrito del arrendador. " * 40,  # cut
]


@pytest.fixture
def daemons(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The daemon turned on, in a private runtime folder of this test (short: a socket's path has ~100 bytes);
    every daemon started in it is stopped at the end."""
    base = Path(tempfile.mkdtemp(prefix="ls-run-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    monkeypatch.setenv("LEGALSEARCH_ENCODER_DAEMON", "1")
    monkeypatch.setenv("LEGALSEARCH_ENCODER_DAEMON_IDLE", "120")
    folder = base / "legalsearch"
    try:
        yield folder
    finally:
        stop_daemons(folder)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def exported(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with the OpenVINO export an index build makes (CLS pooling, XLM-R tokenizer)."""
    own = tmp_path_factory.mktemp("daemon") / "tiny"
    shutil.copytree(tiny_model, own, ignore=shutil.ignore_patterns("openvino", "onnx"))
    load_encoder(str(own), "cpu", backend="openvino", precision="bf16")
    return own


def plan_of(model: Path) -> LeanPlan:
    plan = lean_plan(str(model), "openvino", "bf16")
    assert plan is not None
    return plan


def test_the_daemon_gives_the_vectors_and_token_counts_of_in_process_encoding(
    exported: Path, minilm: Path, daemons: Path
) -> None:
    load_encoder(str(minilm), "cpu", backend="openvino", precision="bf16")  # mean pooling, WordPiece
    for model in (exported, minilm):
        plan = plan_of(model)
        local = plan.build()
        served = daemon_encoder(plan)
        assert isinstance(served, DaemonEncoder)
        for batch in (16, 2):
            assert np.array_equal(served.encode(TEXTS, batch_size=batch), local.encode(TEXTS, batch_size=batch))
        assert served.count_tokens(TEXTS) == local.count_tokens(TEXTS)
        assert served.served, "the daemon answered, not the in-process fallback"
        assert served.info == local.info and served.dim == local.dim
        served.close()
    assert len(running_daemons(daemons)) == 2, "one daemon per model"
    later = daemon_encoder(plan_of(exported))
    assert np.array_equal(later.encode(TEXTS[:1]), plan_of(exported).build().encode(TEXTS[:1]))
    assert len(running_daemons(daemons)) == 2, "a later call uses the running daemon"
    assert stat.S_IMODE(daemons.stat().st_mode) == 0o700
    assert [stat.S_IMODE(p.stat().st_mode) for p in daemons.glob("*.sock")] == [0o600, 0o600]


def ask(index: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, *extra, "-m", "legalsearch", "ask", QUESTION, "--index", str(index), "--json"]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env or os.environ, timeout=300)


def test_ask_answers_through_the_daemon_as_it_does_without_it(exported: Path, tmp_path: Path, daemons: Path) -> None:
    index = tmp_path / "idx"
    source = str(CORPORA / "xml" / "BOE-A-1989-22056.xml")
    built = CliRunner().invoke(app, ["index", source, "--index", str(index), "--model", str(exported), "--dims", "64"])
    assert built.exit_code == 0, built.output
    without = ask(index, env={**os.environ, "LEGALSEARCH_ENCODER_DAEMON": "0"})
    assert without.returncode == 0, without.stderr
    assert running_daemons(daemons) == [], "turned off: none started"
    first = ask(index)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    assert len(running_daemons(daemons)) == 1
    second = ask(index, "-X", "importtime")
    assert second.returncode == 0, second.stderr
    assert json.loads(first.stdout) == json.loads(second.stdout) == json.loads(without.stdout)
    imported = {line.rsplit("|", 1)[-1].strip() for line in second.stderr.splitlines() if "|" in line}
    assert "legalsearch.encoder_daemon" in imported and "openvino" not in imported, "the daemon encoded"
    assert len(running_daemons(daemons)) == 1, "the second ask used the first one's daemon"


def test_the_python_api_keeps_its_model_in_process(
    exported: Path, tmp_path: Path, daemons: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from legalsearch import LegalSearch, query_encoder

    monkeypatch.setattr(query_encoder, "_daemon_wanted", False)  # as in a process where no `ask` command ran

    index = tmp_path / "idx"
    source = str(CORPORA / "xml" / "BOE-A-1989-22056.xml")
    built = CliRunner().invoke(app, ["index", source, "--index", str(index), "--model", str(exported), "--dims", "64"])
    assert built.exit_code == 0, built.output
    search = LegalSearch.open(index)
    assert search.search(QUESTION, k=3, mode="dense")
    assert isinstance(search.encoder, QueryEncoder)
    assert running_daemons(daemons) == [] and not list(daemons.glob("*.sock"))


def test_it_is_not_used_when_turned_off_or_without_a_private_folder(
    exported: Path, daemons: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_of(exported)
    monkeypatch.setenv("LEGALSEARCH_ENCODER_DAEMON", "0")
    assert daemon_encoder(plan) is None
    monkeypatch.setenv("LEGALSEARCH_ENCODER_DAEMON", "1")
    assert daemon_encoder(plan) is not None
    daemons.chmod(0o755)  # others could reach its sockets
    assert daemon_encoder(plan) is None
    assert running_daemons(daemons) == []


def fake_daemon(path: Path, reply) -> socket.socket:
    """A process-local stand-in at `path` that answers one request with `reply(request)`: (header, payload), or
    None to stay silent."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def run() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):  # a client that hangs up
            answer = reply(_receive(conn))
            if answer is None:
                time.sleep(3)
                return
            header, payload = answer
            _send(conn, {**header, "nbytes": len(payload)}, payload)

    threading.Thread(target=run, daemon=True).start()
    return listener


def honest(plan: LeanPlan, vectors: np.ndarray) -> dict:
    return {"key": daemon_key(plan), "info": asdict(plan.info), "shape": list(vectors.shape)}


WRONG = {
    "right": lambda plan, v: (honest(plan, v), v),
    "another model": lambda plan, v: ({**honest(plan, v), "key": "0" * 32}, v),
    "another revision": lambda plan, v: ({**honest(plan, v), "info": asdict(replace(plan.info, revision="x"))}, v),
    "short vectors": lambda plan, v: ({**honest(plan, v), "shape": [len(v), v.shape[1] - 1]}, v[:, :-1].copy()),
    "not finite": lambda plan, v: (honest(plan, v), np.full_like(v, np.nan)),
    "not unit": lambda plan, v: (honest(plan, v), v * 2),
    "an error": lambda plan, v: ({**honest(plan, v), "error": "boom"}, b""),
    "silence": lambda plan, v: None,
}


@pytest.mark.parametrize("kind", list(WRONG))
def test_a_wrong_or_slow_answer_is_not_used(
    exported: Path, daemons: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setattr(encoder_daemon, "REPLY_WAIT", 0.5)
    plan = plan_of(exported)
    expected = plan.build().encode(TEXTS[:2])
    served = daemon_encoder(plan)

    def reply(request: dict):
        assert request == {"op": "encode", "texts": TEXTS[:2], "batch_size": 16}
        answer = WRONG[kind](plan, expected)
        if answer is None:
            return None
        header, vectors = answer
        return header, vectors if isinstance(vectors, bytes) else np.asarray(vectors, "<f4").tobytes()

    with fake_daemon(served.socket_path, reply):
        vectors = served.encode(TEXTS[:2])
    assert np.array_equal(vectors, expected)
    assert served.served == (kind == "right")
    assert running_daemons(daemons) == [], "a daemon that answers wrongly is not replaced by a second one"


def test_a_socket_another_user_holds_is_not_used(exported: Path, daemons: Path, monkeypatch: pytest.MonkeyPatch):
    plan = plan_of(exported)
    served = daemon_encoder(plan)
    expected = plan.build().encode(TEXTS[:1])
    monkeypatch.setattr(encoder_daemon, "peer_uid", lambda conn: os.getuid() + 1)
    asked = []
    with fake_daemon(served.socket_path, lambda request: asked.append(request)):
        assert np.array_equal(served.encode(TEXTS[:1]), expected)
    assert asked == [] and not served.served, "the question was never sent"
    assert running_daemons(daemons) == [], "nor was a daemon started in its place"


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_reach_the_daemon(exported: Path, daemons: Path) -> None:
    served = daemon_encoder(plan_of(exported))
    served.encode(TEXTS[:1])
    assert served.served
    code = (
        "import os, socket, sys; os.setgid(65534); os.setuid(65534); s = socket.socket(socket.AF_UNIX); "
        f"s.connect({str(served.socket_path)!r})"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "PermissionError" in done.stderr, done.stderr


def test_a_dead_daemons_socket_is_replaced(exported: Path, daemons: Path) -> None:
    plan = plan_of(exported)
    served = daemon_encoder(plan)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(served.socket_path))  # bound, never listening, closed: what a killed daemon leaves
    dead.close()
    assert np.array_equal(served.encode(TEXTS[:1]), plan.build().encode(TEXTS[:1]))
    assert served.served and len(running_daemons(daemons)) == 1


def test_an_idle_daemon_goes_and_takes_its_socket_with_it(
    exported: Path, daemons: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGALSEARCH_ENCODER_DAEMON_IDLE", "1")
    served = daemon_encoder(plan_of(exported))
    served.encode(TEXTS[:1])
    assert served.served
    [pid] = running_daemons(daemons)
    served.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and encoder_daemon._alive(pid):
        time.sleep(0.1)
    assert not encoder_daemon._alive(pid)
    assert not list(daemons.glob("*.sock"))
    again = daemon_encoder(plan_of(exported))
    again.encode(TEXTS[:1])
    assert again.served, "the next ask starts a new one"


def test_asks_at_once_share_one_daemon(exported: Path, daemons: Path) -> None:
    plan = plan_of(exported)
    expected = plan.build().encode(TEXTS)
    encoders = [daemon_encoder(plan) for _ in range(3)]
    results: list = [None] * len(encoders)

    def run(i: int) -> None:
        results[i] = encoders[i].encode(TEXTS)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(encoders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.array_equal(found, expected) for found in results)
    assert all(e.served for e in encoders) and len(running_daemons(daemons)) == 1
