"""What is particular to the Qdrant engine: store addresses, the API key kept out of every message, the writer
lock, commits readers see whole (a reader keeps its commit while a writer commits; kill -9 during a commit leaves
the previous one answering and the rerun completes), a rewrite's new generation, what `sync` records, and a
round trip of everything held. The answers themselves are tests/test_engine_contract.py's."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from legalsearch import indexing, store
from legalsearch.engines import StoreSpec, qdrant
from legalsearch.errors import IndexFormatError, LegalSearchError, UsageError

KEY = "s3cret-qdrant-key-5f2a"


def test_store_addresses() -> None:
    server = StoreSpec.parse("qdrant://db.example:6333/boe")
    assert (server.engine, server.url, server.name, server.path) == ("qdrant", "http://db.example:6333", "boe", None)
    assert StoreSpec.parse("qdrants://db.example:6334/boe").url == "https://db.example:6334"
    local = StoreSpec.parse("qdrant:/data/qdrant/boe")
    assert (local.path, local.name, local.label) == (Path("/data/qdrant"), "boe", "qdrant:/data/qdrant/boe")
    for bad in ("qdrant://user:key@db:6333/boe", "qdrant://db:6333/", "qdrant:boe", "qdrant://db:6333/a b"):
        with pytest.raises(UsageError) as raised:
            StoreSpec.parse(bad)
        assert "\n" not in str(raised.value) and ("QDRANT_API_KEY" in str(raised.value)) == ("@" in bad)


class _Refusing(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("api-key"))
        body = b'{"status": {"error": "Must provide an API key or an Authorization bearer token"}}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_GET

    def log_message(self, *args) -> None:
        pass


def test_the_api_key_is_sent_and_never_shown(monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", KEY)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = StoreSpec.parse(f"qdrant://127.0.0.1:{server.server_address[1]}/boe")
        with pytest.raises(LegalSearchError) as refused:
            qdrant.open_reader(spec)
        assert KEY in _Refusing.seen, "the key reaches the server"
        with pytest.raises(LegalSearchError) as unreachable:
            qdrant.open_reader("qdrant://127.0.0.1:9/boe")
    finally:
        server.shutdown()
    for error in (refused.value, unreachable.value):
        text = f"{error}{error!r}"
        assert KEY not in text and "\n" not in str(error)
    assert str(refused.value).startswith(f"{spec.label}: ") and "QDRANT_API_KEY" in str(refused.value)
    assert str(unreachable.value).startswith("http://127.0.0.1:9/boe: ")
    assert KEY not in repr(spec) and KEY not in repr(qdrant.open_writer(spec))
    out, err = capfd.readouterr()
    assert KEY not in out + err and "Warning" not in err, "no third-party warning (an insecure key) reaches the user"


# --- an index in Qdrant's local mode -------------------------------------------------------------------------


LAW_1 = """Ley 1/2099, de pruebas de plazos. BOE-A-2099-1
Artículo 1. Solicitud.
El plazo de la solicitud será de diez días hábiles desde la notificación.
Artículo 2. Notificaciones.
La Administración notificará sus resoluciones en el plazo de diez días.
Disposición final única. Entrada en vigor.
Esta ley entra en vigor al día siguiente de su publicación.
"""
LAW_2 = """Ley 2/2099, de arrendamientos de prueba. BOE-A-2099-2
Artículo 1. Duración.
El contrato de arrendamiento tendrá la duración pactada; el plazo de la solicitud de prórroga, un mes.
Artículo 2. Fianza.
Será obligatoria la exigencia y prestación de fianza en metálico.
"""


@pytest.fixture
def local_index(tmp_path: Path, encoder) -> tuple[Path, Path]:
    """A local index of law 1, and one of law 2 (what a commit adds)."""
    indexes = []
    for number, text in ((1, LAW_1), (2, LAW_2)):
        source = tmp_path / "laws" / f"BOE-A-2099-{number}.txt"
        source.parent.mkdir(exist_ok=True)
        source.write_text(text, encoding="utf-8")
        indexes.append(tmp_path / f"index-{number}")
        indexing.build([str(source)], indexes[-1], encoder=encoder)
    return indexes[0], indexes[1]


@pytest.fixture
def spec(local_index, tmp_path: Path) -> StoreSpec:
    spec = StoreSpec.parse(f"qdrant:{tmp_path / 'qdrant'}/test")
    with qdrant.open_writer(spec) as writer:
        assert not writer.exists()
        writer.write_all(store.load_contents(local_index[0]), "build")
    return spec


def _search(reader, text: str = "plazo de la solicitud") -> list:
    return [(reader.chunks([k])[k]["boe_id"], round(s, 6)) for k, s, _ in reader.lexical([text], 10, None, None, 0)[0]]


def test_everything_held_comes_back(spec: StoreSpec, local_index) -> None:
    held = store.load_contents(local_index[0])
    with qdrant.open_writer(spec) as writer:
        back = writer.contents()
        states = writer.law_states()
        vectors = writer.known_vectors({c.content_hash for c in held.laws[0].chunks})
    assert [s.law for s in back.laws] == [s.law for s in held.laws]
    assert [s.chunks for s in back.laws] == [s.chunks for s in held.laws]
    assert np.array_equal(back.laws[0].vectors, held.laws[0].vectors.astype(np.float16).astype(np.float32))
    assert (back.dims, back.model, back.sources) == (held.dims, held.model, held.sources)
    assert states["BOE-A-2099-1"]["units"] == len(held.laws[0].law.articles)
    assert len(vectors) == len({c.content_hash for c in held.laws[0].chunks})


def test_a_reader_keeps_its_commit_while_a_writer_commits(spec: StoreSpec, local_index) -> None:
    reader = qdrant.open_reader(spec)
    before = _search(reader)
    with qdrant.open_writer(spec) as writer:
        writer.commit(store.Change(added=store.load_contents(local_index[1]).laws))
        writer.update_defaults({"mode": "hybrid"})
    assert not reader.is_current()
    assert _search(reader) == before and reader.titles().keys() == {"BOE-A-2099-1"}
    fresh = qdrant.open_reader(spec)
    assert fresh.titles().keys() == {"BOE-A-2099-1", "BOE-A-2099-2"} and fresh.is_current()
    assert fresh.manifest["defaults"]["mode"] == "hybrid" and fresh.manifest["counts"]["laws"] == 2
    reader.close()
    fresh.close()


def test_one_writer_at_a_time(spec: StoreSpec) -> None:
    with qdrant.open_writer(spec):
        refused = []

        def second() -> None:
            try:
                with qdrant.open_writer(spec):
                    pass
            except LegalSearchError as exc:
                refused.append(str(exc))

        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
        assert len(refused) == 1 and "another legalsearch is writing this index" in refused[0]
        assert f"pid {os.getpid()}" in refused[0] and refused[0].startswith(spec.label)
    with qdrant.open_writer(spec):  # released
        pass


WRITER = """
import sys
from pathlib import Path
from typing import ClassVar
from legalsearch import store
from legalsearch.engines import qdrant
with qdrant.open_writer(sys.argv[1]) as writer:
    writer.commit(store.Change(added=store.load_contents(Path(sys.argv[2])).laws, removed={"BOE-A-2099-1"}))
print("done")
"""


def _write_in_a_process(spec: StoreSpec, source: Path, kill_at: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEGALSEARCH_KILL_AT": kill_at or ""}
    return subprocess.run(
        [sys.executable, "-c", WRITER, spec.label, str(source)], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("stage", ["segment-written", "before-commit"])
def test_kill_9_during_a_commit_leaves_the_previous_one_and_the_rerun_completes(
    spec: StoreSpec, local_index, stage: str
) -> None:
    reader = qdrant.open_reader(spec)
    before, manifest = _search(reader), reader.manifest
    reader.close()  # local mode: one process per folder
    killed = _write_in_a_process(spec, local_index[1], stage)
    assert killed.returncode == -9, killed.stderr
    reader = qdrant.open_reader(spec)
    assert _search(reader) == before and reader.manifest["counts"] == manifest["counts"]
    assert reader.titles().keys() == {"BOE-A-2099-1"} and reader.commit == manifest["commit"]
    reader.close()
    done = _write_in_a_process(spec, local_index[1], None)  # the lock of the dead writer is taken over
    assert done.returncode == 0 and "done" in done.stdout, done.stderr
    reader = qdrant.open_reader(spec)
    assert reader.titles().keys() == {"BOE-A-2099-2"} and reader.commit == manifest["commit"] + 1
    added = store.load_contents(local_index[1]).laws[0]
    assert reader.live == len(added.chunks), "no chunk the killed run wrote is left"
    conn = reader.conn
    every = conn.call("count", conn.collection(reader.generation, "chunks"), exact=True).count
    assert every == len(added.chunks) + len(store.load_contents(local_index[0]).laws[0].chunks)  # + removed ones
    reader.close()
    with qdrant.open_writer(spec) as writer:
        assert writer.compact(True)["merged"] > 0
    reader = qdrant.open_reader(spec)
    conn = reader.conn
    assert conn.call("count", conn.collection(reader.generation, "chunks"), exact=True).count == reader.live
    reader.close()


def test_another_process_is_refused_in_one_line_while_the_folder_is_open(spec: StoreSpec, local_index) -> None:
    reader = qdrant.open_reader(spec)
    try:
        refused = _write_in_a_process(spec, local_index[1], None)
    finally:
        reader.close()
    assert refused.returncode != 0
    assert "another process has this Qdrant folder open" in refused.stderr


REWRITER = """
import sys
from pathlib import Path
from legalsearch import store
from legalsearch.engines import qdrant
with qdrant.open_writer(sys.argv[1]) as writer:
    writer.write_all(store.load_contents(Path(sys.argv[2])), "rewrite")
"""


def test_a_rewrite_is_a_new_generation_and_a_killed_one_is_cleared(spec: StoreSpec, local_index, tmp_path) -> None:
    env = {**os.environ, "LEGALSEARCH_KILL_AT": "before-commit"}
    killed = subprocess.run(
        [sys.executable, "-c", REWRITER, spec.label, str(local_index[1])], env=env, capture_output=True, timeout=300
    )
    assert killed.returncode == -9
    reader = qdrant.open_reader(spec)
    assert reader.titles().keys() == {"BOE-A-2099-1"} and reader.generation == 1
    assert reader.conn.generations() == {1, 2}, "the killed rewrite's collections are there until a writer comes"
    reader.close()
    contents = store.load_contents(local_index[1])
    contents.dims = [64, 32]  # new dims: new collections
    with qdrant.open_writer(spec) as writer:
        first = writer.manifest()
        after = writer.write_all(contents, "rewrite")
        gens = writer.conn.generations()
    assert after["dims"] == [64, 32] and after["commit"] == first["commit"] + 1 and gens == {2}
    reader = qdrant.open_reader(spec)
    assert reader.titles().keys() == {"BOE-A-2099-2"}
    found = reader.dense(np.eye(1, 128, dtype=np.float32), 32, 3, None)
    assert len(found[0]) == reader.live == 2
    reader.close()
    empty = StoreSpec.parse(f"qdrant:{tmp_path / 'fresh'}/none")
    with pytest.raises(IndexFormatError) as missing:
        qdrant.open_reader(empty)
    assert str(missing.value).startswith(f"{empty.label}: no index here")


def test_what_sync_records(spec: StoreSpec) -> None:
    with qdrant.open_writer(spec) as writer:
        writer.record_norms([("BOE-A-2099-1", "20240101", "indexed", "2026-01-01T00:00:00Z", None)])
        writer.record_norms([("BOE-A-2099-1", "20250101", "failed", "2026-01-02T00:00:00Z", "timeout")])
        writer.log_sync("2026-01-01T00:00:00Z", {"added": 1})
        writer.log_sync("2026-01-02T00:00:00Z", {"added": 0})
        states = writer.norm_states()
        runs = writer.sync_runs()
    assert states == {
        "BOE-A-2099-1": {
            "fecha_actualizacion": "20250101", "state": "failed", "checked": "2026-01-02T00:00:00Z", "error": "timeout"
        }
    }  # fmt: skip
    reader = qdrant.open_reader(spec)
    assert reader.syncs() == runs == [("2026-01-01T00:00:00Z", {"added": 1}), ("2026-01-02T00:00:00Z", {"added": 0})]
    reader.close()


def test_index_and_search_through_the_store_address(tmp_path: Path, encoder) -> None:
    """`indexing.build` and `LegalSearch.open` given a qdrant: address (what `legalsearch index/ask --store`
    do): a first build, an added law (the other's vectors reused), the same hits as a local index of the same
    sources."""
    from legalsearch.search import LegalSearch

    sources = []
    for number, text in ((1, LAW_1), (2, LAW_2)):
        sources.append(tmp_path / "laws" / f"BOE-A-2099-{number}.txt")
        sources[-1].parent.mkdir(exist_ok=True)
        sources[-1].write_text(text, encoding="utf-8")
    address = f"qdrant:{tmp_path / 'q'}/laws"
    for target in (address, str(tmp_path / "local")):
        indexing.build([str(sources[0])], target, encoder=encoder)
        report = indexing.build([str(sources[1])], target, encoder=encoder)
        assert report.laws == 2
    found = {}
    for target in (address, str(tmp_path / "local")):
        search = LegalSearch.open(target, encoder=encoder)
        found[target] = [
            [(h.boe_id, h.article_id, h.score) for h in search.search("plazo de la solicitud", k=4, mode=mode)]
            for mode in ("dense", "funnel", "lexical", "hybrid")
        ]
    assert found[address] == found[str(tmp_path / "local")] and all(found[address])


def test_sync_into_qdrant_mirrors_what_it_does_locally(tmp_path: Path, encoder) -> None:
    """`sync` (a stand-in BOE) into a Qdrant store and into a local index: the same laws and hits after a first
    run and after norms changed and one was repealed; its norms and runs recorded in the store."""
    from legalsearch import sync as sync_module
    from legalsearch.search import LegalSearch
    from legalsearch.sources.fetch import BOEClient
    from legalsearch.standin import StandIn, synthetic_norms

    targets = {"qdrant": f"qdrant:{tmp_path / 'q'}/sync", "local": str(tmp_path / "idx")}
    with StandIn() as boe:
        for norm in synthetic_norms(12):
            boe.norms[norm.boe_id] = norm

        def run_both() -> dict:
            answers = {}
            for engine, target in targets.items():
                client = BOEClient(cache=tmp_path / f"cache-{engine}", base_url=boe.url, backoff=0.01, timeout=1)
                options = sync_module.SyncOptions(sync_module.Selection(), rate=1000)
                report = sync_module.sync(target, options, client, encoder=encoder)
                assert report.exit_code == 0, (engine, report.to_dict())
                search = LegalSearch.open(target, encoder=encoder)
                hits = [(h.boe_id, h.article_id, h.score) for h in search.search("cuantía de la fianza", k=5)]
                answers[engine] = ({law["boe_id"] for law in search.laws()}, hits, len(search.syncs()))
            return answers

        first = run_both()
        assert first["qdrant"] == first["local"] and first["qdrant"][0] and first["qdrant"][2] == 1
        estatal = sorted(b for b, n in boe.norms.items() if n.ambito == "1")
        boe.norms[estatal[0]].fecha_actualizacion = "20991231T120000Z"
        boe.norms[estatal[0]].articles[0] = (boe.norms[estatal[0]].articles[0][0], "Texto reformado: fianza.")
        second = run_both()
    assert second["qdrant"] == second["local"] and second["qdrant"][2] == 2
    with qdrant.open_writer(targets["qdrant"]) as writer:
        assert set(writer.norm_states()) >= set(estatal)
