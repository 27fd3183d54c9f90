"""`legalsearch sync` against the local stand-in of the BOE API (legalsearch/standin.py): mirroring, incremental
runs, faults, kill -9, statuses, the análisis, the daily BOE, and the stand-in's own faithfulness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch import store
from legalsearch import sync as sync_module
from legalsearch.cli import app
from legalsearch.search import Filters, LegalSearch
from legalsearch.sources.fetch import BOEClient
from legalsearch.standin import StandIn, synthetic_norms

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "corpora" / "sample" / "boe-api"
runner = CliRunner()


@pytest.fixture
def boe():
    with StandIn() as standin:
        for norm in synthetic_norms(30):
            standin.norms[norm.boe_id] = norm
        yield standin


def client(boe: StandIn, cache: Path) -> BOEClient:
    return BOEClient(cache=cache, base_url=boe.url, backoff=0.01, timeout=1)


def run(boe, tmp_path, encoder, **options) -> sync_module.SyncReport:
    selection = sync_module.Selection(**options.pop("selection", {}))
    options.setdefault("rate", 1000)
    settings = sync_module.SyncOptions(selection, **options)
    return sync_module.sync(tmp_path / "idx", settings, client(boe, tmp_path / "cache"), encoder=encoder)


def fetched(boe: StandIn) -> list[str]:
    return [p.rsplit("/", 1)[1] for p, _, _ in boe.hits if "/legislacion-consolidada/id/" in p]


def laws(tmp_path: Path) -> set[str]:
    return {law["boe_id"] for law in LegalSearch.open(tmp_path / "idx").laws()}


def test_a_first_sync_mirrors_what_the_catalogue_selects(boe, tmp_path, encoder) -> None:
    report = run(boe, tmp_path, encoder)
    estatal = {b for b, n in boe.norms.items() if n.ambito == "1"}
    assert laws(tmp_path) == estatal and sorted(report.new) == sorted(estatal) and report.exit_code == 0
    assert sorted(fetched(boe)) == sorted(estatal), "each selected norm fetched once"
    for _, _, headers in boe.hits:
        assert headers["Accept"] in ("application/json", "application/xml")
        assert headers["User-Agent"].startswith("legalsearch/")
    everything = run(boe, tmp_path, encoder, selection={"ambito": "todo"}, full=True)
    assert laws(tmp_path) == set(boe.norms) and len(everything.new) == len(boe.norms) - len(estatal)
    leyes = run(boe, tmp_path / "rangos", encoder, selection={"rangos": ("Ley",)})
    assert leyes.selected == sum(1 for n in boe.norms.values() if n.ambito == "1" and n.rango == "1300")


def test_an_incremental_run_fetches_exactly_what_changed(boe, tmp_path, encoder) -> None:
    run(boe, tmp_path, encoder)
    boe.hits.clear()
    quiet = run(boe, tmp_path, encoder)
    assert len(boe.hits) <= 3 and quiet.embedded == 0 and not quiet.new and not quiet.changed
    assert quiet.listing.startswith("window since")
    estatal = sorted(b for b, n in boe.norms.items() if n.ambito == "1")
    changed, derogated = estatal[:5], estatal[5]
    for boe_id in changed:
        norm = boe.norms[boe_id]
        norm.fecha_actualizacion = "20991231T120000Z"
        norm.articles[0] = (norm.articles[0][0], f"Texto reformado de la norma {boe_id}: cuantía de la fianza.")
    boe.norms[derogated].fecha_actualizacion = "20991231T130000Z"
    boe.norms[derogated].vigencia_agotada = "S"
    boe.norms[derogated].estatus_derogacion = "S"
    fresh = synthetic_norms(2, seed=9, start="2099-12-01")
    for norm in fresh:
        norm.boe_id = norm.boe_id.replace("-1000", "-7000")
        norm.fecha_actualizacion = "20991231T140000Z"
        norm.ambito = "1"
        boe.norms[norm.boe_id] = norm
    boe.hits.clear()
    report = run(boe, tmp_path, encoder)
    assert sorted(fetched(boe)) == sorted([*changed, derogated, *(n.boe_id for n in fresh)]), "exactly those 8"
    assert sorted(report.changed) == sorted([*changed, derogated]) and report.derogated == [derogated]
    search = LegalSearch.open(tmp_path / "idx")
    hit = search.search(f"Texto reformado de la norma {changed[0]}", k=1, mode="lexical")[0]
    assert hit.boe_id == changed[0] and "reformado" in hit.text, "changed text searchable when the run ends"
    assert search.law(derogated)["status"] == "derogada"
    assert all(h.status == "derogado" for h in search.search("norma", k=50, mode="lexical") if h.boe_id == derogated)
    vigentes = run(boe, tmp_path, encoder, selection={"vigentes": True})
    assert vigentes.removed == [derogated] and derogated not in laws(tmp_path)


def test_gone_norms_are_removed_and_a_404_of_a_listed_norm_is_asked_again(boe, tmp_path, encoder) -> None:
    run(boe, tmp_path, encoder)
    estatal = sorted(b for b, n in boe.norms.items() if n.ambito == "1")
    gone, withdrawn = estatal[0], estatal[1]
    cache = tmp_path / "cache"
    assert (cache / f"{gone}.xml").exists()
    del boe.norms[gone]
    boe.norms[withdrawn].consolidated = False  # listed, but its text answers 404 (e.g. being re-consolidated)
    boe.norms[withdrawn].fecha_actualizacion = "20991231T120000Z"
    report = run(boe, tmp_path, encoder, full=True)
    assert report.gone == [gone] and report.missing == [withdrawn] and report.removed == [gone]
    assert gone not in laws(tmp_path) and withdrawn in laws(tmp_path), "a listed norm is never removed for a 404"
    assert not (cache / f"{gone}.xml").exists(), "a gone norm's cached text is deleted"
    assert report.exit_code == 0, "a 404 is the BOE's answer, not a failure"
    boe.hits.clear()
    again = run(boe, tmp_path, encoder)
    assert fetched(boe) == [withdrawn] and again.missing == [withdrawn], "asked again on the next run"
    boe.norms[withdrawn].consolidated = True
    back = run(boe, tmp_path, encoder)
    assert back.changed == [withdrawn] and not back.missing and withdrawn in laws(tmp_path)
    del boe.norms[withdrawn]
    assert run(boe, tmp_path, encoder, full=True).removed == [withdrawn], "unlisted and 404: gone"


def test_faults_are_retried_and_failures_listed(boe, tmp_path, encoder) -> None:
    estatal = sorted(b for b, n in boe.norms.items() if n.ambito == "1")
    path = "/datosabiertos/api/legislacion-consolidada/id/"
    boe.faults.errors[path + estatal[0]] = 2  # two 503s, then the answer
    boe.faults.drops[path + estatal[1]] = 1  # a dropped connection, then the answer
    boe.faults.errors[path + estatal[2]] = 99  # never answers
    boe.faults.slow[path + estatal[3]] = 1  # one answer slower than the client's timeout, then a quick one
    boe.faults.slow_seconds = 1.5
    boe.faults.errors["/datosabiertos/api/legislacion-consolidada"] = 1  # the listing too
    report = run(boe, tmp_path, encoder)
    assert list(report.failed) == [estatal[2]] and report.exit_code == 1
    assert laws(tmp_path) == set(estatal) - {estatal[2]}, "the others are indexed"
    assert fetched(boe).count(estatal[0]) == 3 and fetched(boe).count(estatal[1]) == 2
    assert fetched(boe).count(estatal[3]) == 2, "a timeout is retried"
    boe.faults.errors.clear()
    retry = run(boe, tmp_path, encoder)
    assert retry.changed == [estatal[2]] and retry.exit_code == 0 and estatal[2] in laws(tmp_path)


def test_the_cli_reports_and_exits_by_outcome(boe, tmp_path, encoder, tiny_model, monkeypatch) -> None:
    monkeypatch.setenv("LEGALSEARCH_BOE_API", boe.url + "/legislacion-consolidada")  # the earlier meaning
    index = tmp_path / "idx"
    base = ["sync", "--index", str(index), "--model", str(tiny_model), "--rate", "1000"]
    dry = runner.invoke(app, [*base, "--dry-run", "--json"])
    assert dry.exit_code == 0 and json.loads(dry.stdout)["estimate"]["fetch"] == 24 and not fetched(boe)
    assert not index.exists(), "a dry run writes nothing"
    done = runner.invoke(app, [*base, "--json"])
    assert done.exit_code == 0, done.output
    assert len(json.loads(done.stdout)["new"]) == 24
    assert runner.invoke(app, [*base, "--ambito", "provincial"]).exit_code == 2
    assert runner.invoke(app, [*base, "--ids", str(tmp_path / "none.txt")]).exit_code == 2
    ids = tmp_path / "ids.txt"
    chosen = sorted(boe.norms)[:3]
    ids.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    assert runner.invoke(app, ["sync", "--index", str(tmp_path / "few"), "--model", str(tiny_model), "--ids",
                               str(ids), "--rate", "1000"]).exit_code == 0  # fmt: skip
    assert {law["boe_id"] for law in LegalSearch.open(tmp_path / "few").laws()} == set(chosen)
    boe.faults.errors["/datosabiertos/api/legislacion-consolidada/id/" + chosen[0]] = 99
    boe.norms[chosen[0]].fecha_actualizacion = "20991231T000000Z"
    failed = runner.invoke(app, ["sync", "--index", str(tmp_path / "few"), "--ids", str(ids), "--rate", "1000"])
    assert failed.exit_code == 1 and f"failed: {chosen[0]}" in failed.output
    info = runner.invoke(app, ["info", "--index", str(tmp_path / "few")])
    assert "last sync" in info.stdout and "failed 1" in info.stdout
    runs = LegalSearch.open(tmp_path / "few").syncs(since="2000-01-01")
    assert [len(r["new"]) for r in runs] == [3, 0] and list(runs[1]["failed"]) == [chosen[0]]
    assert LegalSearch.open(tmp_path / "few").syncs(since="2999-01-01") == []


KILLED = """
import sys
from pathlib import Path
from legalsearch import sync
from legalsearch.embedding import load_encoder
from legalsearch.sources.fetch import BOEClient
client = BOEClient(cache=Path(sys.argv[3]), base_url=sys.argv[2], backoff=0.01, timeout=5)
sync.sync(Path(sys.argv[4]), sync.SyncOptions(rate=1000), client, encoder=load_encoder(sys.argv[1]))
"""


@pytest.mark.parametrize("stage", ["fetching", "segment-written", "before-commit"])
def test_kill_9_then_rerun_continues_without_refetching(boe, tmp_path, encoder, tiny_model, stage) -> None:
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLED))
    command = [sys.executable, str(script), str(tiny_model), boe.url, str(tmp_path / "cache"), str(tmp_path / "idx")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if stage == "fetching":
        boe.faults.delay = 0.05
        process = subprocess.Popen(command, env=env)
        while len(fetched(boe)) < 8:
            assert process.poll() is None
        process.kill()
        process.wait()
        boe.faults.delay = 0
    else:
        assert subprocess.run(command, env={**env, "LEGALSEARCH_KILL_AT": stage}).returncode == -9
    cached = {p.stem for p in (tmp_path / "cache").glob("*.xml")}
    assert stage == "fetching" or (cached and not [p for p in (tmp_path / "cache").rglob("*") if ".part-" in p.name])
    boe.hits.clear()
    report = run(boe, tmp_path, encoder)
    estatal = {b for b, n in boe.norms.items() if n.ambito == "1"}
    assert laws(tmp_path) == estatal and report.exit_code == 0
    assert not set(fetched(boe)) & cached, "what was fetched whole is not fetched again"
    assert not [p for p in (tmp_path / "cache").rglob("*") if ".part-" in p.name], "no partial files"


def test_analysis_is_kept_filterable_and_cited(boe, tmp_path, encoder) -> None:
    target = sorted(b for b, n in boe.norms.items() if n.ambito == "1")[0]
    boe.norms[target].materias = [("5678", "Arrendamientos urbanos")]
    boe.norms[target].posteriores = [("BOE-A-2099-55", "270", "MODIFICA el art. 1")]
    run(boe, tmp_path, encoder)
    search = LegalSearch.open(tmp_path / "idx")
    law = search.law(target)
    assert law["materias"] == ["Arrendamientos urbanos"]
    assert law["referencias"]["posteriores"][0]["id_norma"] == "BOE-A-2099-55"
    hits = search.search("norma", k=10, mode="lexical", filters=Filters(materias=("arrendamientos urbanos",)))
    assert hits and {h.boe_id for h in hits} == {target}
    with pytest.raises(Exception, match="materia Pesca not in this index"):
        search.search("norma", k=3, filters=Filters(materias=("Pesca",)))
    from fastapi.testclient import TestClient

    from legalsearch.server import create_app

    runs = TestClient(create_app(search)).get("/syncs", params={"since": "2000-01-01"}).json()
    assert len(runs) == 1 and target in runs[0]["new"] and runs[0]["listing"] == "full"


def test_the_daily_boe_is_indexed_as_published_until_consolidated(boe, tmp_path, encoder) -> None:
    published = synthetic_norms(2, seed=5, start="2099-11-02")
    for norm in published:
        norm.boe_id = norm.boe_id.replace("-1000", "-8000")
        norm.articles = [("Objeto", f"Texto publicado en el diario de la norma {norm.boe_id} sobre drones.")]
        norm.ambito = "1"
    boe.diario["20991102"] = published
    import datetime

    since = (datetime.date.today() - datetime.timedelta(days=2)).isoformat()
    boe.diario[since.replace("-", "")] = published
    report = run(boe, tmp_path, encoder, diario=True, since=since)
    assert sorted(report.diario) == sorted(n.boe_id for n in published)
    assert any("/boe/sumario/" in p for p, _, _ in boe.hits)
    search = LegalSearch.open(tmp_path / "idx")
    hit = search.search(f"drones {published[0].boe_id}", k=1, mode="lexical")[0]
    assert hit.boe_id == published[0].boe_id and hit.consolidated is False
    consolidated = published[0]
    consolidated.articles = [("Objeto", f"Texto consolidado de la norma {consolidated.boe_id} sobre drones.")]
    consolidated.fecha_actualizacion = "20991231T120000Z"
    boe.norms[consolidated.boe_id] = consolidated
    again = run(boe, tmp_path, encoder)
    assert consolidated.boe_id in again.new
    hit = LegalSearch.open(tmp_path / "idx").search(f"drones {consolidated.boe_id}", k=1, mode="lexical")[0]
    assert hit.consolidated is True and "consolidado" in hit.text


def test_paging_survives_an_unstable_order_and_repeats(tmp_path) -> None:
    with StandIn() as boe:
        for norm in synthetic_norms(2_500):
            boe.norms[norm.boe_id] = norm
        listing = sync_module.list_catalogue(client(boe, tmp_path), page=1_000, since=None, confirm_end=True)
        assert set(listing.items) == set(boe.norms) and listing.sound
        offsets = [int(q["offset"]) for _, q, _ in boe.hits]
        assert offsets == [0, 999, 1998, 2499, 2499], "pages overlap by one item; the end is asked twice"
        # the real default order shifts between calls; ordered by id, pages do not
        query = [q for _, q, _ in boe.hits]
        assert all("identificador" in q["query"] for q in query)


def test_the_stand_in_answers_like_the_samples(boe) -> None:
    def get(path: str, accept: str | None):
        headers = {"Accept": accept} if accept else {}
        request = urllib.request.Request(boe.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    status, body = get("/legislacion-consolidada?limit=2", None)
    assert status == 400 and "No soportado ningún mime type" in body.decode()
    status, body = get("/legislacion-consolidada?limit=2", "application/json")
    page = json.loads(body)
    assert status == 200 and page["status"] == {"code": "200", "text": "ok"} and len(page["data"]) == 2
    status, body = get("/legislacion-consolidada?from=20000101&to=20000102", "application/json")
    assert json.loads(body)["data"] == ""
    assert get("/legislacion-consolidada/id/BOE-A-1900-1", "application/xml")[0] == 404
    assert get("/legislacion-consolidada/id/not-an-id", "application/xml")[0] == 400
    assert get("/boe/sumario/20000102", "application/json")[0] == 404
    if not SAMPLES.exists():
        pytest.skip(f"{SAMPLES} is absent: the shapes are checked against the real captures there")
    real = json.loads((SAMPLES / "bquant_boe-lc-normas.json").read_text(encoding="utf-8"))["data"][0]
    ours = page["data"][0]
    assert [k for k in ours if k in real] == list(real), "the real item's fields, in its order"
    real_empty = json.loads((SAMPLES / "bquant_boe-lc-vacio.json").read_text(encoding="utf-8"))
    assert real_empty["data"] == ""
    meta = (SAMPLES / "pepo_BOE-A-2015-10566_metadatos.xml").read_text(encoding="utf-8")
    norm_xml = get("/legislacion-consolidada/id/" + sorted(boe.norms)[0], "application/xml")[1].decode()
    for tag in ("fecha_actualizacion", "identificador", "estatus_derogacion", "estatus_anulacion", "vigencia_agotada"):
        assert f"<{tag}" in meta and f"<{tag}" in norm_xml
    assert store.is_index(Path("nowhere")) is False
