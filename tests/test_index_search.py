"""Chunking, index building (atomic, incremental), Matryoshka dims and search, with the tiny test model."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from legalsearch import indexing
from legalsearch.chunking import chunk_law
from legalsearch.embedding import matryoshka
from legalsearch.errors import IndexFormatError, ModelError, QueryError
from legalsearch.ranking import Priors
from legalsearch.search import LegalSearch
from legalsearch.sources import parse_bytes
from legalsearch.store import FORMAT_VERSION, read_manifest, verify_checksums

REPO = Path(__file__).resolve().parent.parent

LAW_A = """Ley 1/2099, de pruebas de vacaciones. BOE-A-2099-1
TÍTULO I
De los trabajadores
Artículo 1. Vacaciones.
El trabajador tendrá derecho a vacaciones anuales retribuidas de treinta días naturales.
Artículo 2. Mayoría de edad.
Los españoles son mayores de edad a los dieciocho años.
Artículo 3. Notificaciones.
La Administración notificará sus resoluciones en el plazo de diez días.
Disposición final única. Entrada en vigor.
Esta ley entra en vigor al día siguiente de su publicación.
"""
LAW_B = """Ley 2/2099, de arrendamientos de prueba. BOE-A-2099-2
Artículo 1. Duración.
El contrato de arrendamiento de vivienda tendrá la duración pactada por las partes.
Artículo 2. Fianza.
Será obligatoria la exigencia y prestación de fianza en metálico.
"""


def long_article_law(paragraphs: int = 40) -> str:
    lines = ["Ley 3/2099, de notificaciones largas. BOE-A-2099-3", "Artículo 1. Notificaciones."]
    for i in range(1, paragraphs + 1):
        lines.append(
            f"{i}. La Administración notificará sus resoluciones a los interesados en el plazo de diez días. "
            "Las notificaciones se practicarán por medios electrónicos cuando así proceda."
        )
        if i % 5 == 0:
            lines += ["a) Primer supuesto.", "b) Segundo supuesto."]
    return "\n".join([*lines, "Artículo 2. Otro.", "Breve.", ""])


def test_long_articles_split_at_apartados_with_a_context_header(encoder) -> None:
    law = parse_bytes(long_article_law().encode(), "BOE-A-2099-3.txt")
    chunks = chunk_law(law, encoder.count_tokens, max_tokens=300)
    a1 = [c for c in chunks if c.article_id == "a1"]
    assert len(a1) > 3 and [c.part for c in a1] == list(range(len(a1)))
    header = "Ley 3/2099, de notificaciones largas › Artículo 1. Notificaciones."
    for chunk in a1:
        first, *body = chunk.text.split("\n")
        assert first == header
        assert encoder.count_tokens([chunk.text])[0] <= 300
        assert body[0][0].isdigit(), "every piece starts at an apartado"
        assert all(line.endswith(".") for line in body), "never cut inside a sentence"
    rebuilt = "\n".join(line for c in a1 for line in c.text.split("\n")[1:])
    assert rebuilt == law.article("a1").text, "pieces cover the article exactly once, in order"
    assert [c.chunk_id for c in chunks if c.article_id == "a2"] == ["BOE-A-2099-3#a2#0"]


def build(sources, index: Path, encoder, **kw):
    return indexing.build([str(s) for s in sources], index, encoder=encoder, **kw)


def test_build_and_search_roll_up_to_articles(laws_dir: Path, tmp_path: Path, encoder) -> None:
    index = tmp_path / "idx"
    (laws_dir / "BOE-A-2099-3.txt").write_text(long_article_law(), encoding="utf-8")
    report = build([laws_dir], index, encoder, max_tokens=96)
    assert (report.laws, report.articles) == (3, 8)
    assert report.chunks > report.articles and report.embedded == report.chunks
    assert report.dims == [128, 64]
    manifest = read_manifest(index)
    assert manifest["model"]["id"] == encoder.info.model_id and manifest["model"]["dim"] == 128
    assert manifest["faiss"]["factory"] == {"128": "Flat", "64": "Flat"}
    assert manifest["counts"] == {"laws": 3, "articles": 8, "earlier_wordings": 0, "chunks": report.chunks}
    assert verify_checksums(index, manifest) == []
    search = LegalSearch.open(index, encoder=encoder)
    for dim in (128, 64):
        hits = search.search(  # the retriever's own order (the priors may reorder by more than the score)
            "notificaciones electrónicas de la Administración", k=8, dim=dim, mode="dense", priors=Priors.none()
        )
        keys = [(h.boe_id, h.article_id) for h in hits]
        assert len(keys) == len(set(keys)) == 8, "each article once, even when several of its chunks match"
        assert [h.rank for h in hits] == list(range(1, 9))
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    hit = search.search("vacaciones", k=1)[0]
    data = hit.to_dict()
    for key in ("rank", "score", "boe_id", "law_title", "article_id", "heading", "path", "url", "text", "citation"):
        assert key in data
    assert data["url"] == f"https://www.boe.es/buscar/act.php?id={hit.boe_id}#{hit.article_id}"


def test_each_dim_is_the_renormalised_prefix_of_the_full_vector(laws_dir: Path, tmp_path: Path, encoder) -> None:
    index = tmp_path / "idx"
    build([laws_dir], index, encoder, dims=[128, 32, 64])
    (segment,) = read_manifest(index)["segments"]
    folder = index / "segments" / segment["name"]
    full = np.load(folder / "vectors.f16.npy", allow_pickle=False).astype(np.float32)
    assert full.dtype == np.float32 and np.allclose(np.linalg.norm(full, axis=1), 1, atol=1e-2)
    for dim in (128, 64, 32):
        stored = faiss.read_index(str(folder / "faiss" / f"dim-{dim}.faiss"))
        vectors = stored.reconstruct_n(0, stored.ntotal)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        assert np.allclose(vectors, matryoshka(full, dim), atol=1e-5)
    search = LegalSearch.open(index, encoder=encoder)
    query = "mayores de edad"
    vector = encoder.encode([query])
    scores = matryoshka(full, 32) @ matryoshka(vector, 32)[0]
    hit = search.search(query, k=1, dim=32, mode="dense")[0]
    assert hit.score == pytest.approx(float(scores.max()), abs=1e-4), "score = cosine at that dim"


def _contents(index: Path) -> dict:
    """Every committed file of an index and its bytes (SQLite's shared-memory and WAL files are not content, and
    a segment still being built, under a hidden name, is not part of any commit)."""
    return {
        p.relative_to(index): p.read_bytes()
        for p in index.rglob("*")
        if p.is_file()
        and not p.name.endswith(("-shm", "-wal"))
        and not any(".building-" in part for part in p.relative_to(index).parts)
    }


class CountingEncoder:
    def __init__(self, encoder):
        self.inner, self.texts = encoder, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts, **kw):
        self.texts.extend(texts)
        return self.inner.encode(texts, **kw)


def test_incremental_reindex(laws_dir: Path, tmp_path: Path, encoder) -> None:
    index = tmp_path / "idx"
    build([laws_dir], index, encoder)
    files = {p: p.stat().st_mtime_ns for p in index.rglob("*") if p.is_file() and not p.name.endswith(("-shm", "-wal"))}
    counting = CountingEncoder(encoder)
    again = build([laws_dir], index, counting)
    assert again.up_to_date and again.embedded == 0 and counting.texts == []
    assert files == {
        p: p.stat().st_mtime_ns for p in index.rglob("*") if p.is_file() and not p.name.endswith(("-shm", "-wal"))
    }, "nothing rewritten"

    changed = LAW_A.replace("treinta días naturales", "treinta y dos días naturales").replace(
        "Artículo 3. Notificaciones.\nLa Administración notificará sus resoluciones en el plazo de diez días.\n", ""
    )
    (laws_dir / "BOE-A-2099-1.txt").write_text(changed, encoding="utf-8")
    counting = CountingEncoder(encoder)
    report = build([laws_dir], index, counting)
    assert report.embedded == 1 and len(counting.texts) == 1 and "treinta y dos" in counting.texts[0]
    search = LegalSearch.open(index, encoder=encoder)
    ids = {h.article_id for h in search.search("notificará resoluciones", k=10) if h.boe_id == "BOE-A-2099-1"}
    assert "a3" not in ids and {"a1", "a2"} <= ids, "the removed article is gone"
    assert report.laws == 2


def test_adding_a_law_keeps_the_others_and_replace_drops_them(laws_dir: Path, tmp_path: Path, encoder) -> None:
    index = tmp_path / "idx"
    build([laws_dir / "BOE-A-2099-1.txt"], index, encoder)
    counting = CountingEncoder(encoder)
    report = build([laws_dir / "BOE-A-2099-2.txt"], index, counting)
    assert report.laws == 2 and report.embedded == len(counting.texts) == 2
    report = build([laws_dir / "BOE-A-2099-2.txt"], index, encoder, replace=True)
    assert report.laws == 1
    assert [law["boe_id"] for law in LegalSearch.open(index, encoder=encoder).laws()] == ["BOE-A-2099-2"]


def test_model_mismatch_and_bad_queries_are_refused(laws_dir: Path, tmp_path: Path, encoder, minilm) -> None:
    index = tmp_path / "idx"
    build([laws_dir], index, encoder)
    with pytest.raises(ModelError, match=r"was built with model .*tiny-xlmr"):
        LegalSearch.open(index, model=str(minilm))
    with pytest.raises(ModelError, match="was built with model"):
        indexing.build([str(laws_dir)], index, model=str(minilm))
    search = LegalSearch.open(index, encoder=encoder)
    with pytest.raises(QueryError, match="dim 256 was not built for this index; built: 128, 64"):
        search.search("vacaciones", dim=256)
    with pytest.raises(QueryError, match="empty query"):
        search.search("   ")
    with pytest.raises(QueryError, match="k must be between 1 and 1000"):
        search.search("vacaciones", k=0)
    with pytest.raises(IndexFormatError, match="no index here"):
        LegalSearch.open(tmp_path / "nowhere")


def test_open_is_cheap_and_search_is_thread_safe(laws_dir: Path, tmp_path: Path, encoder) -> None:
    index = tmp_path / "idx"
    build([laws_dir], index, encoder)
    lazy = LegalSearch.open(index)
    assert lazy._encoder is None and lazy.laws(), "opening and browsing load no model"
    search = LegalSearch.open(index, encoder=encoder)
    queries = ["vacaciones", "mayores de edad", "fianza", "notificaciones", "arrendamiento de vivienda"] * 4
    expected = [[(h.boe_id, h.article_id, h.score) for h in search.search(q, k=3)] for q in queries]
    results: dict[int, list] = {}

    def worker(i: int) -> None:
        results[i] = [(h.boe_id, h.article_id, h.score) for h in search.search(queries[i], k=3)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(len(queries))] == expected
    batched = search.search_many(queries, k=3)
    assert [[(h.boe_id, h.article_id) for h in hits] for hits in batched] == [
        [(b, a) for b, a, _ in hits] for hits in expected
    ]


KILLER = """
import sys, time
from pathlib import Path
from legalsearch import indexing, segment_components
from legalsearch.embedding import load_encoder

encoder = load_encoder(sys.argv[1])
phase = sys.argv[4]
if phase == "embed":
    real = encoder.encode
    def slow(texts, **kw):
        print("EMBEDDING", flush=True)
        time.sleep(60)
        return real(texts, **kw)
    encoder.encode = slow
else:
    real_build = segment_components.build_faiss
    def slow_faiss(*args, **kw):
        print("WRITING", flush=True)
        time.sleep(60)
        return real_build(*args, **kw)
    segment_components.build_faiss = slow_faiss
indexing.build([sys.argv[2]], Path(sys.argv[3]), encoder=encoder)
"""


@pytest.mark.parametrize("phase", ["embed", "write"])
def test_killing_a_build_leaves_the_previous_index_intact(
    laws_dir: Path, tmp_path: Path, encoder, tiny_model, phase: str
) -> None:
    index = tmp_path / "idx"
    build([laws_dir / "BOE-A-2099-1.txt"], index, encoder)
    before = _contents(index)
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILLER))
    process = subprocess.Popen(
        [sys.executable, str(script), str(tiny_model), str(laws_dir / "BOE-A-2099-2.txt"), str(index), phase],
        stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert line.strip() in ("EMBEDDING", "WRITING")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    after = _contents(index)
    assert after == before
    search = LegalSearch.open(index, encoder=encoder)
    assert [law["boe_id"] for law in search.laws()] == ["BOE-A-2099-1"]
    assert search.search("vacaciones", k=1)[0].article_id == "a1"
    # the next build cleans up after the killed one and succeeds
    report = build([laws_dir / "BOE-A-2099-2.txt"], index, encoder)
    assert report.laws == 2
    assert not list((index / "segments").glob(".*")), "the killed run's segment is gone"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx.")]
    assert leftovers == [], "no leftovers beside the index, not even the writers' lock file (its holder removes it)"


def test_manifest_is_plain_json_and_no_pickle(laws_dir: Path, tmp_path: Path, encoder) -> None:
    index = tmp_path / "idx"
    build([laws_dir], index, encoder)
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["chunking"]["max_tokens"] == 512
    assert manifest["defaults"] == {
        "mode": "hybrid", "dim": 128, "k": 5, "hybrid_weights": {"dense": 0.1, "lexical": 1.0},
        "funnel_dim": 64, "funnel_shortlist": 1000, "hybrid_funnel_above": 100_000, "lexicon_weight": 0.3,
        "priors": Priors().to_dict(),
    }  # fmt: skip
    assert manifest["lexical"]["kind"] == "bm25" and manifest["faiss"]["quantize"] == "none"
    files = {name.split("/", 2)[2] for name in read_manifest(index)["files"]}  # segments/<name>/<file>
    assert {"vectors.f16.npy", "faiss/dim-128.faiss", "faiss/dim-64.faiss", "bm25/terms.json"} <= files
    (segment,) = read_manifest(index)["segments"]
    np.load(index / "segments" / segment["name"] / "vectors.f16.npy", allow_pickle=False)
    assert not [p for p in index.rglob("*") if p.suffix in (".pkl", ".pickle")]


def test_a_new_chunk_budget_rechunks_every_law(laws_dir: Path, tmp_path: Path, encoder) -> None:
    index = tmp_path / "idx"
    (laws_dir / "BOE-A-2099-3.txt").write_text(long_article_law(), encoding="utf-8")
    first = build([laws_dir / "BOE-A-2099-3.txt", laws_dir / "BOE-A-2099-1.txt"], index, encoder)
    counting = CountingEncoder(encoder)
    smaller = build([laws_dir / "BOE-A-2099-1.txt"], index, counting, max_tokens=160)  # law 3 kept, not given
    assert smaller.chunks > first.chunks and read_manifest(index)["chunking"]["max_tokens"] == 160
    assert 0 < len(counting.texts) == smaller.embedded < smaller.chunks, "short articles keep their vectors"
    assert all(encoder.count_tokens([t])[0] <= 160 for t in counting.texts)


def test_ctrl_c_during_a_cli_build_is_one_line_and_keeps_the_index(laws_dir: Path, tmp_path: Path, tiny_model) -> None:
    index = tmp_path / "idx"
    env = {**os.environ, "PYTHONPATH": str(REPO), "LEGALSEARCH_INDEX": str(index)}
    first = subprocess.run(
        [sys.executable, "-m", "legalsearch", "index", str(laws_dir / "BOE-A-2099-1.txt"), "--model", str(tiny_model)],
        env=env, cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    before = _contents(index)
    script = (
        "import sys, time, signal, os; from legalsearch import segment_components, cli\n"
        # a terminal's state: SIGINT handled by Python and not blocked, whatever the test runner passed down
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])\n"
        "real = segment_components.build_faiss\n"
        "def slow(*a, **k):\n"
        "    signal.raise_signal(signal.SIGINT); time.sleep(5); return real(*a, **k)\n"
        "segment_components.build_faiss = slow\n"
        "sys.argv = ['legalsearch', 'index', sys.argv[1]]\ncli.main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(laws_dir / "BOE-A-2099-2.txt")], env=env, cwd=tmp_path,
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 130, result.stderr + result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: interrupted: {index} was not changed (an update is committed only when complete)"
    )
    assert "Traceback" not in result.stderr
    assert _contents(index) == before
    assert not list((index / "segments").glob(".*")), "an interrupted run removes its own segment"
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx.")]
    assert left == [], "nothing is left beside the index (the lock file goes with its holder)"


def test_several_sources_of_one_law_index_the_newest_text_with_complete_metadata(tmp_path: Path, encoder) -> None:
    from .conftest import CORPORA

    texto, html = CORPORA / "xml" / "BOE-A-1978-31229.texto.xml", CORPORA / "html" / "BOE-A-1978-31229.html"
    if not texto.exists():
        pytest.skip(f"no {texto}")
    report = build([texto, html], tmp_path / "idx", encoder, dims=[64])
    assert report.duplicates == [f"BOE-A-1978-31229: indexed {texto}; skipped {html}"]
    search = LegalSearch.open(tmp_path / "idx", encoder=encoder)
    [law] = search.laws()
    assert law["title"] == "Constitución Española." and law["departamento"] == "Cortes Generales"
    assert law["origin"] == str(texto), "the API text holds the 2026 reform of article 69"
    assert "Ibiza" in search.article("BOE-A-1978-31229", "a69")["text"]
