"""`legalsearch pull` against a local HTTP server serving a published release folder (docs/releases.md): the
follower answers like the publisher after a full pull and after deltas; unsigned, tampered, rolled-back and
expired releases and untrusted keys are refused with nothing changed; a missing delta falls back to the full
release; the index/sync/pull boundaries; dense modes refused without the publisher's model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch import indexing, publish, pull, release
from legalsearch.cli import app
from legalsearch.errors import ModelError
from legalsearch.pull_transport import Transport
from legalsearch.search import LegalSearch

from .conftest import CORPORA
from .pull_server import serve
from .test_index_search import LAW_A, LAW_B

runner = CliRunner()
QUERIES = ["vacaciones anuales retribuidas", "duración del contrato de arrendamiento", "fianza en metálico",
           "plazo máximo para resolver y notificar", "recurso de alzada"]  # fmt: skip
MODES = ("dense", "funnel", "lexical", "hybrid")
LAW_C = """Ley 3/2099, de fianzas de prueba. BOE-A-2099-3

Artículo 1. Fianza.
A la celebración del contrato será obligatoria la exigencia y prestación de fianza en metálico en cantidad
equivalente a una mensualidad de renta.

Artículo 2. Actualización.
Durante los cinco primeros años de duración del contrato la fianza no estará sujeta a actualización.
"""


@pytest.fixture(scope="module")
def origin(tmp_path_factory, encoder) -> dict:
    """Built once per module: the publisher's index, its key pair and its first release (a full one)."""
    root = tmp_path_factory.mktemp("publisher")
    laws = root / "laws"
    laws.mkdir()
    (laws / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    (laws / "BOE-A-2099-2.txt").write_text(LAW_B, encoding="utf-8")
    shutil.copy(CORPORA / "xml" / "BOE-A-2015-11430.xml", laws)  # the LPAC: a change of a few laws is a delta
    indexing.build([str(laws)], root / "index", encoder=encoder)
    release.generate_key(root / "key")
    release.generate_key(root / "other")
    publish.publish(root / "index", root / "out", root / "key")
    return {"root": root, "laws": laws}


@pytest.fixture
def world(origin, tmp_path, encoder):
    """A copy of the publisher (index, laws, release folder) served on 127.0.0.1; the follower's path."""
    for name in ("index", "out"):
        shutil.copytree(origin["root"] / name, tmp_path / name)
    with serve(tmp_path / "out") as (base, handler):
        yield {
            "tmp": tmp_path, "index": tmp_path / "index", "laws": origin["laws"], "out": tmp_path / "out",
            "url": base, "hits": handler.hits, "handler": handler, "key": origin["root"] / "key",
            "pub": origin["root"] / "key.pub", "other": origin["root"] / "other.pub",
            "follower": tmp_path / "follower", "encoder": encoder,
        }  # fmt: skip


def pull_cli(world, *extra: str, url: bool = True):
    arguments = ["pull", *([world["url"]] if url else []), "--index", str(world["follower"]), *extra]
    return runner.invoke(app, arguments)


def answers(index: Path, encoder) -> dict:
    search = LegalSearch.open(index, encoder=encoder)
    return {
        (mode, query): [(h.citation, round(h.score, 4)) for h in search.search(query, k=5, mode=mode)]
        for mode in MODES
        for query in QUERIES
    }


def state(path: Path) -> dict:
    """Every file under `path` and beside it (name → size, mtime): what "nothing changed" compares."""
    files = {}
    for item in sorted(path.parent.rglob("*")):
        if item.is_file() and not item.name.endswith((".lock", "-shm")):  # SQLite's shared memory, touched by reads
            stat = item.stat()
            files[str(item.relative_to(path.parent))] = (stat.st_size, stat.st_mtime_ns)
    return files


def republish(world, change: str = "add") -> None:
    """The publisher changes its index (a new law, or a law's new wording) and publishes again: a delta."""
    changes = world["tmp"] / "changes" / change
    changes.mkdir(parents=True)
    if change == "add":
        (changes / "BOE-A-2099-3.txt").write_text(LAW_C, encoding="utf-8")
    else:
        (changes / "BOE-A-2099-1.txt").write_text(LAW_A.replace("treinta días", "treinta y cinco días"), "utf-8")
    indexing.build([str(changes)], world["index"], encoder=world["encoder"])
    report = publish.publish(world["index"], world["out"], world["key"])
    assert report.kind == "delta", report.reason


def manifest_of(world) -> dict:
    return json.loads((world["out"] / release.MANIFEST).read_text(encoding="utf-8"))


def resign(world, change) -> None:
    """Rewrite the served manifest with `change(signed)` applied, signed with the publisher's key."""
    signed = manifest_of(world)["signed"]
    change(signed)
    (world["out"] / release.MANIFEST).write_bytes(release.sign(signed, release.load_private_key(world["key"])))


# --- full pull, deltas ------------------------------------------------------------------------------------------


def test_a_full_pull_answers_like_the_publisher(world) -> None:
    result = pull_cli(world, "--trust", str(world["pub"]))
    assert result.exit_code == 0, result.output
    follower = world["follower"]
    assert answers(follower, world["encoder"]) == answers(world["index"], world["encoder"])
    record = json.loads((follower / pull.FOLLOW).read_text(encoding="utf-8"))
    assert record["url"] == world["url"] and record["keyids"] == [release.keyid(release.load_trusted_key(world["pub"]))]
    assert release.held_release(follower)["sequence"] == manifest_of(world)["signed"]["sequence"]
    assert not list(follower.parent.glob(f".{follower.name}.*")), "nothing left beside the index"
    again = pull_cli(world, url=False)  # the recorded URL and keys
    assert again.exit_code == 0 and "up to date" in again.output


def test_later_pulls_download_only_the_deltas_and_readers_move_to_them(world) -> None:
    assert pull_cli(world, "--trust", str(world["pub"])).exit_code == 0
    reader = LegalSearch.open(world["follower"], encoder=world["encoder"])
    before = reader.commit
    republish(world, "add")
    republish(world, "change")
    world["hits"].clear()
    result = pull_cli(world, url=False)
    assert result.exit_code == 0, result.output
    fetched = [path for path, _ in world["hits"]]
    assert fetched[0] == f"/{release.MANIFEST}"
    assert fetched[1:] and all(p.startswith("/delta-") for p in fetched[1:]), fetched
    assert answers(world["follower"], world["encoder"]) == answers(world["index"], world["encoder"])
    hits = reader.search("fianza en metálico", k=5, mode="lexical")  # the same reader, no restart
    assert reader.commit > before and "BOE-A-2099-3" in {h.boe_id for h in hits}
    assert "treinta y cinco" in reader.article("BOE-A-2099-1", "a1")["text"]


def newer_full_release(world) -> int:
    """The publisher adds a law, publishes a full release, then changes a law (a delta after it); its sequence."""
    republish(world, "add")
    full = publish.publish(world["index"], world["out"], world["key"], full=True)
    republish(world, "change")
    assert manifest_of(world)["signed"]["full"]["sequence"] == full.sequence
    return full.sequence


def test_a_missing_delta_falls_back_to_the_full_release(world) -> None:
    assert pull_cli(world, "--trust", str(world["pub"])).exit_code == 0
    full = newer_full_release(world)

    def lost(start: int) -> dict:  # a delta the manifest names and the server lost
        path = f"lost-{start + 1:06d}"
        files = {f"{path}/{release.CHANGES}": {"bytes": 100, "sha256": "ab" * 32}}
        return {"from": start, "to": start + 1, "path": path, "commits": [], "laws_changed": 1, "laws_removed": 0,
                "rows": 1, "bytes": 100, "files": files}  # fmt: skip

    after = [d for d in manifest_of(world)["signed"]["deltas"] if d["from"] >= full]
    resign(world, lambda signed: signed.update(deltas=[lost(1), lost(2), *after]))
    report = pull.pull(world["follower"], transport=Transport(backoff=0.01))
    assert report.fell_back and "missing" in report.fell_back
    assert report.steps == [f"full {full}", f"delta {full + 1}"]
    assert answers(world["follower"], world["encoder"]) == answers(world["index"], world["encoder"])


def test_a_broken_chain_of_deltas_installs_the_newest_full_release(world) -> None:
    assert pull_cli(world, "--trust", str(world["pub"])).exit_code == 0
    full = newer_full_release(world)
    resign(world, lambda signed: signed.update(deltas=[d for d in signed["deltas"] if d["from"] >= full]))
    world["hits"].clear()
    report = pull.pull(world["follower"])
    assert report.steps == [f"full {full}", f"delta {full + 1}"] and not report.fell_back
    fetched = {path.split("/")[1] for path, _ in world["hits"]}
    assert fetched == {release.MANIFEST, f"full-{full:06d}", f"delta-{full + 1:06d}"}, fetched
    assert answers(world["follower"], world["encoder"]) == answers(world["index"], world["encoder"])


def test_faults_on_the_way_are_retried(world) -> None:
    files = manifest_of(world)["signed"]["full"]["files"]
    handler = world["handler"]
    for name, fault in zip(sorted(files), ["drop", "truncate", "503", "truncate"], strict=False):
        handler.faults[f"/{name}"] = [fault]
    keys = [world["pub"]]
    pull.pull(world["follower"], world["url"], keys, transport=Transport(backoff=0.01, timeout=2))
    assert answers(world["follower"], world["encoder"]) == answers(world["index"], world["encoder"])


# --- refusals: nothing changed ------------------------------------------------------------------------------------


def refused(world, *extra: str, url: bool = True) -> str:
    before = state(world["follower"])
    result = pull_cli(world, *extra, url=url)
    assert result.exit_code != 0, result.output
    assert state(world["follower"]) == before, "nothing changed"
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_unsigned_tampered_and_untrusted_manifests_are_refused(world) -> None:
    line = refused(world, "--trust", str(world["other"]))
    assert "not trusted" in line
    envelope = manifest_of(world)
    good = (world["out"] / release.MANIFEST).read_bytes()
    (world["out"] / release.MANIFEST).write_text(json.dumps({"signed": envelope["signed"], "signatures": []}))
    assert "unsigned" in refused(world, "--trust", str(world["pub"]))
    envelope["signed"]["expires"] = "2999-01-01T00:00:00Z"
    (world["out"] / release.MANIFEST).write_text(json.dumps(envelope))
    assert "changed after signing" in refused(world, "--trust", str(world["pub"]))
    (world["out"] / release.MANIFEST).write_bytes(good)
    assert "--trust" in refused(world)  # a first pull without a key


def test_a_tampered_file_is_refused_with_nothing_changed(world) -> None:
    assert pull_cli(world, "--trust", str(world["pub"])).exit_code == 0
    republish(world, "add")
    delta = manifest_of(world)["signed"]["deltas"][-1]
    name = sorted(delta["files"])[0]
    data = bytearray((world["out"] / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (world["out"] / name).write_bytes(bytes(data))
    commit = LegalSearch.open(world["follower"], encoder=world["encoder"]).commit
    assert "sha256" in refused(world, url=False)
    assert LegalSearch.open(world["follower"], encoder=world["encoder"]).commit == commit


def test_a_rollback_and_an_expired_manifest_are_refused(world) -> None:
    old = (world["out"] / release.MANIFEST).read_bytes()
    republish(world, "add")
    assert pull_cli(world, "--trust", str(world["pub"])).exit_code == 0
    new = (world["out"] / release.MANIFEST).read_bytes()
    (world["out"] / release.MANIFEST).write_bytes(old)
    assert "rollback" in refused(world, url=False)
    (world["out"] / release.MANIFEST).write_bytes(new)
    resign(world, lambda signed: signed.update(expires="2020-01-01T00:00:00Z"))
    assert "expired" in refused(world, url=False)


def test_schemes_other_than_https_file_and_local_http_are_refused(world) -> None:
    for url in ("http://example.com/releases", "ftp://example.com/releases"):
        result = runner.invoke(app, ["pull", url, "--index", str(world["follower"]), "--trust", str(world["pub"])])
        assert result.exit_code == 2 and ("not allowed" in result.output or "plain http" in result.output)
    assert not world["follower"].exists()
    result = runner.invoke(app, ["pull", str(world["out"]), "--index", str(world["follower"]), "--trust",
                                 str(world["pub"])])  # fmt: skip
    assert result.exit_code == 0, result.output  # a folder on disk (file:)


# --- what pull may write, and who writes a pulled index ---------------------------------------------------------


def test_a_folder_that_is_not_an_index_and_a_local_index_are_refused(world) -> None:
    mine = world["tmp"] / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mis notas", encoding="utf-8")
    result = runner.invoke(app, ["pull", world["url"], "--index", str(mine), "--trust", str(world["pub"])])
    assert result.exit_code == 2 and "not a legalsearch index" in result.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    result = runner.invoke(app, ["pull", world["url"], "--index", str(world["index"]), "--trust", str(world["pub"])])
    assert result.exit_code == 2 and "built here" in result.output


def test_a_pulled_index_refuses_index_and_sync_until_detached(world) -> None:
    assert pull_cli(world, "--trust", str(world["pub"])).exit_code == 0
    follower = world["follower"]
    result = runner.invoke(app, ["index", str(world["laws"]), "--index", str(follower)])
    assert result.exit_code == 2 and "follows the releases" in result.output and "detach" in result.output
    result = runner.invoke(app, ["sync", "--index", str(follower)])
    assert result.exit_code == 2 and "follows the releases" in result.output
    assert runner.invoke(app, ["detach", "--index", str(follower)]).exit_code == 0
    assert not (follower / pull.FOLLOW).exists()
    (world["tmp"] / "BOE-A-2099-3.txt").write_text(LAW_C, encoding="utf-8")
    indexing.build([str(world["tmp"] / "BOE-A-2099-3.txt")], follower, encoder=world["encoder"])  # its own now
    assert "built here" in refused(world, url=True)


# --- answers before the model arrives -----------------------------------------------------------------------------


def test_without_the_publishers_model_dense_is_refused_and_the_default_is_lexical(world, capsys) -> None:
    resign(world, lambda signed: signed["fingerprint"].update(id="someone/another-model"))
    assert pull_cli(world, "--trust", str(world["pub"])).exit_code == 0
    search = LegalSearch.open(world["follower"], encoder=world["encoder"])
    assert search.search("fianza en metálico", k=3, mode="lexical")
    for mode in ("dense", "funnel", "hybrid"):
        with pytest.raises(ModelError, match="someone/another-model"):
            search.search("vacaciones", k=3, mode=mode)
    capsys.readouterr()
    hits = search.search("vacaciones anuales retribuidas", k=3)  # the default mode: lexical, with a note
    assert hits and all(h.match in ("lexical", "cita") for h in hits)
    note = capsys.readouterr().err
    assert "answering lexically" in note and "someone/another-model" in note
    search.search("vacaciones anuales retribuidas", k=3)
    assert capsys.readouterr().err == "", "the note is said once"


def test_probe_vectors_that_the_local_model_does_not_give_make_it_lexical(world) -> None:
    def scramble(signed: dict) -> None:
        for probe in signed["probes"]:
            vector = release.decode_vector(probe["vector"])
            probe["vector"] = release.encode_vector(vector[::-1].copy())

    resign(world, scramble)
    assert pull_cli(world, "--trust", str(world["pub"])).exit_code == 0
    search = LegalSearch.open(world["follower"], encoder=world["encoder"])
    with pytest.raises(ModelError, match="probe cosine"):
        search.search("vacaciones", k=3, mode="dense")
    notes: list[str] = []
    assert pull.usable_mode(search, None, notes.append) == "lexical"
    assert notes and "probe cosine" in notes[0]
    unscrambled = LegalSearch.open(world["index"], encoder=world["encoder"])
    assert pull.usable_mode(unscrambled, "dense") == "dense", "an index built here is not checked"


def test_a_pulled_index_answers_lexically_until_its_model_arrives(tmp_path, tiny_model, monkeypatch, capsys) -> None:
    from legalsearch.embedding import load_encoder

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (tmp_path / "laws").mkdir()
    (tmp_path / "laws" / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    indexing.build([str(tmp_path / "laws")], tmp_path / "index", encoder=load_encoder(str(model)))
    release.generate_key(tmp_path / "key")
    publish.publish(tmp_path / "index", tmp_path / "out", tmp_path / "key")
    follower = tmp_path / "follower"
    pull.pull(follower, str(tmp_path / "out"), [tmp_path / "key.pub"])
    shutil.move(model, tmp_path / "elsewhere")  # the model has not arrived on this machine
    search = LegalSearch.open(follower)
    assert search.default_mode != "lexical"
    capsys.readouterr()
    hits = search.search("vacaciones anuales retribuidas", k=2)
    assert hits and all(h.match in ("lexical", "cita") for h in hits)
    assert "answering lexically: the model cannot be loaded here" in capsys.readouterr().err
    with pytest.raises(ModelError, match="cannot be loaded"):
        search.search("vacaciones anuales retribuidas", k=2, mode="dense")
    shutil.move(tmp_path / "elsewhere", model)  # it arrives
    monkeypatch.setattr(pull, "LOAD_RETRY_SECONDS", 0.0)
    search = LegalSearch.open(follower)
    assert search.search("vacaciones anuales retribuidas", k=2, mode="dense")[0].match == "dense"
