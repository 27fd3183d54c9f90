"""Publishing an index as a signed release folder (publish.py), and what a follower does with it (release.py):
install a full release, apply deltas, refuse what is unsigned, tampered, stale or rolled back."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from legalsearch import indexing, publish, release, store
from legalsearch.cli import app
from legalsearch.errors import TargetError
from legalsearch.search import Filters, LegalSearch

from .test_index_search import LAW_A, LAW_B, long_article_law

SAMPLE = Path(__file__).resolve().parent.parent / "corpora" / "sample" / "laws"
QUERIES = ["derecho a vacaciones", "fianza en metálico", "notificaciones electrónicas", "tratado internacional"]
MODES = ("dense", "funnel", "lexical", "hybrid")


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """Four laws: two BOE samples (XML), a short text law and one with a long article split into pieces."""
    folder = tmp_path / "sources"
    folder.mkdir()
    for name in ("xml/BOE-A-1835-2348.xml", "xml/BOE-A-1989-22056.xml"):
        shutil.copy(SAMPLE / name, folder / Path(name).name)
    (folder / "BOE-A-2099-1.txt").write_text(LAW_A, encoding="utf-8")
    (folder / "BOE-A-2099-3.txt").write_text(long_article_law(), encoding="utf-8")
    return folder


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "publisher"
    release.generate_key(path)
    return path


def build(sources: Path, index: Path, encoder) -> None:
    indexing.build([str(sources)], index, encoder=encoder, replace=True)


def update(sources: Path, index: Path, encoder) -> None:
    """Change a law, add one, remove one, then index again."""
    (sources / "BOE-A-2099-1.txt").write_text(LAW_A.replace("treinta días", "treinta y dos días"), encoding="utf-8")
    (sources / "BOE-A-2099-2.txt").write_text(LAW_B, encoding="utf-8")
    (sources / "BOE-A-1835-2348.xml").unlink()
    build(sources, index, encoder)


def signed_of(out: Path, key: Path) -> dict:
    trusted = [release.load_trusted_key(Path(f"{key}.pub"))]
    return release.verify((out / release.MANIFEST).read_bytes(), trusted)


def follow(out: Path, key: Path, index: Path) -> list[release.Step]:
    """What `pull` does with a release folder on this disk: verify, plan, check files, install/apply."""
    data = (out / release.MANIFEST).read_bytes()
    signed = signed_of(out, key)
    held = release.held_release(index) if index.exists() else None
    release.check_fresh(signed)
    release.check_not_older(signed, held)
    steps = release.plan_steps(signed, held)
    digest = release.hashlib.sha256(data).hexdigest()
    for step in steps:
        release.check_files(out, step.files)
        if step.kind == "full":
            release.install_full(out / step.path, signed, index, digest)
        else:
            release.apply_delta(index, out / step.path if step.path else out, signed, step.sequence, digest)
    return steps


def digests(index: Path) -> dict[str, str]:
    connection = store.connect(index / store.DATABASE)
    try:
        return {b: store.law_digest(connection, b) for (b,) in connection.execute("SELECT boe_id FROM laws")}
    finally:
        connection.close()


def answers(index: Path, encoder) -> dict:
    search = LegalSearch.open(index, encoder=encoder)
    found = {}
    for mode in MODES:
        for query in QUERIES:
            hits = search.search(query, k=8, mode=mode)
            found[mode, query] = sorted((-round(h.score, 4), h.boe_id, h.article_id) for h in hits)
    return found


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_prints_it(tmp_path: Path) -> None:
    key = tmp_path / "k"
    result = CliRunner().invoke(app, ["keygen", str(key)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert Path(f"{key}.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    body = "".join(key.read_text().splitlines()[1:-1])
    assert body not in result.output
    again = CliRunner().invoke(app, ["keygen", str(key)])
    assert again.exit_code != 0 and "already exists" in again.output
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_a_full_release_installs_to_the_publishers_catalogue_and_answers(
    sources: Path, tmp_path: Path, key: Path, encoder
) -> None:
    index, out, follower = tmp_path / "idx", tmp_path / "out", tmp_path / "follower"
    build(sources, index, encoder)
    report = publish.publish(index, out, key)
    assert report.kind == "full" and report.sequence == 1
    assert report.bytes < report.index_bytes / 2, "the release ships less than the index holds"
    signed = signed_of(out, key)
    assert signed["counts"]["chunks"] == report.rows == report.chunks
    assert signed["fingerprint"]["pooling"] == "cls" and signed["fingerprint"]["normalize"] is True
    assert len(signed["probes"]) == release.PROBES
    for name in signed["full"]["files"]:
        assert not name.endswith((".pkl", ".pickle")) and ".part" not in name
        if name.endswith(".npy"):
            np.load(out / name, allow_pickle=False)
    steps = follow(out, key, follower)
    assert [s.kind for s in steps] == ["full"]
    assert digests(follower) == digests(index)
    assert answers(follower, encoder) == answers(index, encoder)
    assert release.held_release(follower)["sequence"] == 1
    assert (
        release.check_probes(signed, lambda texts: encoder.encode(texts))
        and min(release.check_probes(signed, lambda texts: encoder.encode(texts))) >= release.PROBE_COSINE
    )


def test_deltas_follow_added_changed_and_removed_laws(
    sources: Path, tmp_path: Path, key: Path, encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, out, follower = tmp_path / "idx", tmp_path / "out", tmp_path / "follower"
    build(sources, index, encoder)
    full = publish.publish(index, out, key)
    follow(out, key, follower)
    reader = LegalSearch.open(follower, encoder=encoder)  # open before the delta: it moves to it by itself
    assert "BOE-A-2099-2" not in {law["boe_id"] for law in reader.laws()}

    update(sources, index, encoder)
    delta = publish.publish(index, out, key)
    assert delta.kind == "delta" and delta.sequence == 2
    assert delta.laws_changed == 2 and delta.laws_removed == 1  # BOE-A-2099-1 changed, -2 added, 1835 removed
    assert delta.bytes < full.bytes / 4
    assert (out / full.path).is_dir(), "the full release stays: followers start from it"
    monkeypatch.setattr(release, "MAX_SMALL", 1)  # the delta's segment and the installed one: merged after it
    steps = follow(out, key, follower)
    assert [s.kind for s in steps] == ["delta"]
    assert len(store.read_manifest(follower)["segments"]) == 1
    assert digests(follower) == digests(index)
    assert "BOE-A-1835-2348" not in digests(follower)
    assert {law["boe_id"] for law in reader.laws()} == set(digests(index))
    hits = reader.search("treinta y dos días", k=3, mode="lexical")
    assert hits and hits[0].boe_id == "BOE-A-2099-1"
    assert answers(follower, encoder) == answers(index, encoder)

    empty = publish.publish(index, out, key)  # nothing changed: a new manifest, a later expiry
    assert empty.kind == "empty" and empty.sequence == 3
    assert [s.kind for s in follow(out, key, follower)] == ["delta"]
    assert release.held_release(follower)["sequence"] == 3

    fresh = tmp_path / "fresh"  # a new follower: the full release, then both deltas
    assert [s.kind for s in follow(out, key, fresh)] == ["full", "delta", "delta"]
    assert digests(fresh) == digests(index)


def test_a_full_release_beside_the_delta_keeps_followers_on_deltas(
    sources: Path, tmp_path: Path, key: Path, encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, out, follower = tmp_path / "idx", tmp_path / "out", tmp_path / "follower"
    build(sources, index, encoder)
    first = publish.publish(index, out, key)
    follow(out, key, follower)
    update(sources, index, encoder)
    second = publish.publish(index, out, key, full=True)
    assert second.kind == "full" and second.reason == "asked (--full)" and second.laws_changed == 2
    assert (out / first.path).is_dir(), "the parts the previous manifest named stay one publish longer"
    assert [s.kind for s in follow(out, key, follower)] == ["delta"], "a follower on the chain takes the delta"
    assert digests(follower) == digests(index)
    fresh = tmp_path / "fresh"
    assert [s.kind for s in follow(out, key, fresh)] == ["full"]
    assert digests(fresh) == digests(index)

    monkeypatch.setattr(publish, "MAX_CHAIN", 2)
    assert publish.publish(index, out, key).kind == "empty"
    third = publish.publish(index, out, key)
    assert third.kind == "full" and "deltas since the last full release" in third.reason
    assert not (out / first.path).exists() and (out / second.path).is_dir()
    assert [s.kind for s in follow(out, key, follower)] == ["delta", "delta"]
    assert release.held_release(follower)["sequence"] == 4


def test_a_rewritten_index_breaks_the_chain_and_followers_install_the_full_release(
    sources: Path, tmp_path: Path, key: Path, encoder
) -> None:
    index, out, follower = tmp_path / "idx", tmp_path / "out", tmp_path / "follower"
    build(sources, index, encoder)
    publish.publish(index, out, key)
    follow(out, key, follower)
    indexing.build([str(sources)], index, encoder=encoder, max_tokens=128)  # another chunk budget: a rewrite
    again = publish.publish(index, out, key)
    assert again.kind == "full" and again.sequence == 2
    signed = signed_of(out, key)
    assert signed["deltas"] == [] and signed["full"]["sequence"] == 2
    assert [s.kind for s in follow(out, key, follower)] == ["full"]
    assert digests(follower) == digests(index)
    assert answers(follower, encoder) == answers(index, encoder)


def test_unsigned_tampered_untrusted_stale_and_rolled_back_manifests_are_refused(
    sources: Path, tmp_path: Path, key: Path, encoder
) -> None:
    index, out = tmp_path / "idx", tmp_path / "out"
    build(sources, index, encoder)
    publish.publish(index, out, key)
    data = (out / release.MANIFEST).read_bytes()
    trusted = [release.load_trusted_key(Path(f"{key}.pub"))]
    envelope = json.loads(data)

    tampered = json.loads(data)
    tampered["signed"]["counts"]["chunks"] += 1
    with pytest.raises(release.ReleaseError, match="changed after signing"):
        release.verify(json.dumps(tampered).encode(), trusted)
    unsigned = {"signed": envelope["signed"], "signatures": []}
    with pytest.raises(release.ReleaseError, match="unsigned"):
        release.verify(json.dumps(unsigned).encode(), trusted)
    other = tmp_path / "other"
    release.generate_key(other)
    with pytest.raises(release.ReleaseError, match="not trusted"):
        release.verify(data, [release.load_trusted_key(Path(f"{other}.pub"))])

    signed = release.verify(data, trusted)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=31)
    with pytest.raises(release.ReleaseError, match="expired"):
        release.check_fresh(signed, now=later)
    with pytest.raises(release.ReleaseError, match="rollback"):
        release.check_not_older(signed, {"series": signed["series"], "sequence": 2})
    with pytest.raises(release.ReleaseError, match="another series"):
        release.check_not_older(signed, {"series": "f" * 32, "sequence": 1})

    vectors = next(n for n in signed["full"]["files"] if n.endswith(".npy"))
    with open(out / vectors, "r+b") as f:  # same size, one byte changed
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(release.ReleaseError, match="sha256 differs"):
        release.check_files(out, signed["full"]["files"])


def test_a_delta_applies_only_to_the_release_it_follows(sources: Path, tmp_path: Path, key: Path, encoder) -> None:
    index, out, follower = tmp_path / "idx", tmp_path / "out", tmp_path / "follower"
    build(sources, index, encoder)
    publish.publish(index, out, key)
    follow(out, key, follower)
    update(sources, index, encoder)
    publish.publish(index, out, key)
    signed = signed_of(out, key)
    delta = signed["deltas"][0]
    release.apply_delta(follower, out / delta["path"], signed, 2)
    before = digests(follower)
    with pytest.raises(release.ReleaseError, match="holds release 2"):
        release.apply_delta(follower, out / delta["path"], signed, 2)
    assert digests(follower) == before


def test_a_delta_that_fails_before_its_commit_changes_nothing(
    sources: Path, tmp_path: Path, key: Path, encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, out, follower = tmp_path / "idx", tmp_path / "out", tmp_path / "follower"
    build(sources, index, encoder)
    publish.publish(index, out, key)
    follow(out, key, follower)
    update(sources, index, encoder)
    publish.publish(index, out, key)
    before, folders = digests(follower), sorted(p.name for p in (follower / "segments").iterdir())

    def stop(stage: str) -> None:
        if stage == "before-commit":
            raise KeyboardInterrupt

    monkeypatch.setattr(store, "pause", stop)
    with pytest.raises(KeyboardInterrupt):
        follow(out, key, follower)
    assert digests(follower) == before and release.held_release(follower)["sequence"] == 1
    assert sorted(p.name for p in (follower / "segments").iterdir()) == folders, "the new segment is removed"
    monkeypatch.undo()
    assert [s.kind for s in follow(out, key, follower)] == ["delta"]
    assert digests(follower) == digests(index)


def test_probes_catch_another_model(sources: Path, tmp_path: Path, key: Path, encoder) -> None:
    index, out = tmp_path / "idx", tmp_path / "out"
    build(sources, index, encoder)
    publish.publish(index, out, key)
    signed = signed_of(out, key)
    rng = np.random.default_rng(0)
    with pytest.raises(release.ReleaseError, match="probe cosine"):
        release.check_probes(signed, lambda texts: rng.normal(size=(len(texts), encoder.info.dim)))


def test_publish_writes_only_into_a_release_folder_and_leaves_what_it_did_not_write(
    sources: Path, tmp_path: Path, key: Path, encoder
) -> None:
    index = tmp_path / "idx"
    build(sources, index, encoder)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(TargetError, match="not a release folder"):
        publish.publish(index, foreign, key)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    result = CliRunner().invoke(app, ["publish", "--index", str(index), "--key", str(key), str(foreign)])
    assert result.exit_code != 0 and "not a release folder" in result.output and "Traceback" not in result.output

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["publish", "--index", str(index), "--key", str(key), str(out)])
    assert result.exit_code == 0, result.output
    (out / "README.md").write_text("a dataset card", encoding="utf-8")
    (out / "full-999999").mkdir()  # not ours: no part.json
    publish.publish(index, out, key, full=True)
    publish.publish(index, out, key, full=True)
    assert (out / "README.md").read_text(encoding="utf-8") == "a dataset card" and (out / "full-999999").is_dir()
    assert not (out / "full-000001").exists()


def test_a_publish_that_fails_halfway_leaves_the_previous_release(
    sources: Path, tmp_path: Path, key: Path, encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, out = tmp_path / "idx", tmp_path / "out"
    build(sources, index, encoder)
    publish.publish(index, out, key)
    manifest = (out / release.MANIFEST).read_bytes()
    update(sources, index, encoder)

    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(release, "gzip_file", broken)
    with pytest.raises(OSError):
        publish.publish(index, out, key)
    assert (out / release.MANIFEST).read_bytes() == manifest
    assert sorted(p.name for p in out.iterdir()) == ["full-000001", release.MANIFEST]
    monkeypatch.undo()
    assert publish.publish(index, out, key).kind == "delta"


def test_earlier_wordings_travel_with_the_release(sources: Path, tmp_path: Path, key: Path, encoder) -> None:
    from .test_search_modes import API_LAW

    (sources / "BOE-A-2099-1.txt").unlink()
    (sources / "BOE-A-2099-1.xml").write_bytes(API_LAW)  # a1 in two wordings, a2 added later
    index, out, follower = tmp_path / "idx", tmp_path / "out", tmp_path / "follower"
    indexing.build([str(sources)], index, encoder=encoder, history=True)
    publish.publish(index, out, key)
    follow(out, key, follower)
    assert store.read_manifest(follower)["counts"]["earlier_wordings"] == 1
    assert digests(follower) == digests(index)
    search = LegalSearch.open(follower, encoder=encoder)
    then = search.search("Texto de pruebas", k=5, mode="lexical", filters=Filters(as_of="2099-06-01"))
    assert [(h.article_id, h.text) for h in then if h.boe_id == "BOE-A-2099-1"] == [("a1", "Texto original.")]
    assert search.article("BOE-A-2099-1", "a1", as_of="2099-06-01")["text"] == "Texto original."


def segment_files(index: Path) -> dict[str, str]:
    """sha256 of every file of every segment, by its path below the segment (segment names differ)."""
    found = {}
    for segment in sorted((index / "segments").iterdir()):
        for path in sorted(p for p in segment.rglob("*") if p.is_file()):
            if path.name != "segment.json":
                found[str(path.relative_to(segment))] = release.hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_an_install_in_small_batches_writes_the_same_index(
    sources: Path, tmp_path: Path, key: Path, encoder, monkeypatch
) -> None:
    """install_full streams vectors, FAISS codes and BM25 postings in batches (bounded memory): batch edges
    anywhere must give the same files and catalogue as one batch."""
    index, out = tmp_path / "idx", tmp_path / "out"
    build(sources, index, encoder)
    publish.publish(index, out, key)
    whole = tmp_path / "whole"
    follow(out, key, whole)
    monkeypatch.setattr(release, "TEXT_BATCH", 7)
    monkeypatch.setattr(release, "VECTOR_BATCH", 5)
    monkeypatch.setattr(release, "POSTINGS_BLOCK", 13)
    batched = tmp_path / "batched"
    follow(out, key, batched)
    assert segment_files(batched) == segment_files(whole)
    assert digests(batched) == digests(whole) == digests(index)
