"""`legalsearch sync` on the API's bad days, each fault produced by the stand-in (legalsearch/standin.py): bad
listings never remove anything, 404s and empty texts are retried, batches commit as they go and a kill loses at
most one, a down API stops the run, Retry-After is honoured, only safe API roots and redirects are used, options
do what they say."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legalsearch import store
from legalsearch import sync as sync_module
from legalsearch.cli import app
from legalsearch.errors import FetchError, UsageError
from legalsearch.search import LegalSearch
from legalsearch.sources.fetch import BOEClient, retry_after
from legalsearch.standin import Norm, StandIn, synthetic_norms
from tests.test_sync import REPO, client, fetched, laws, run

runner = CliRunner()
NORM_PATH = "/datosabiertos/api/legislacion-consolidada/id/"
LISTING_PATH = "/datosabiertos/api/legislacion-consolidada"


@pytest.fixture
def boe():
    with StandIn() as standin:
        standin.add(synthetic_norms(30))
        yield standin


def estatal(boe: StandIn) -> list[str]:
    return sorted(b for b, n in boe.norms.items() if n.ambito == "1")


def chunks_of(index: Path) -> int:
    return store.read_manifest(index)["counts"]["chunks"]


# --- never remove what a bad listing forgot -----------------------------------------------------------------


@pytest.mark.parametrize("fault", ["empty", "blank", "error", "garbage"])
def test_an_empty_or_erroneous_full_listing_removes_nothing(boe, tmp_path, encoder, fault) -> None:
    first = run(boe, tmp_path, encoder)
    before = laws(tmp_path)
    boe.faults.listing = [fault] * 4  # every answer of this listing, the confirmation too
    report = run(boe, tmp_path, encoder, full=True)
    assert laws(tmp_path) == before and not report.removed and not report.gone
    assert report.exit_code == 1 and len(report.problems()) == 1 and "listing" in report.problems()[0]
    assert report.listing_error and ("no norm" in report.listing_error or "status" in report.listing_error
                                     or "JSON" in report.listing_error)  # fmt: skip
    assert sync_module._read_state(tmp_path / "idx")["last_full"] == first.started, "a failed run is not the last"


def test_short_pages_and_a_norm_leaving_between_pages_lose_nothing(boe, tmp_path, encoder) -> None:
    run(boe, tmp_path, encoder)
    ids = sorted(boe.norms)
    leaving = ids[3]  # before the first page boundary: every later page shifts by one
    boe.faults.page_cap = 7  # the server caps pages below what is asked
    boe.faults.after_page = [lambda s: s.norms.pop(leaving)]
    boe.hits.clear()
    listing = sync_module.list_catalogue(client(boe, tmp_path / "c"), page=10, since=None, confirm_end=True)
    assert set(boe.norms) <= set(listing.items) and listing.sound, "every norm still listed is in the listing"
    assert [int(q["offset"]) for _, q, _ in boe.hits[:3]] == [0, 6, 5], "a page past the last one: asked again"
    boe.norms[leaving] = next(n for n in synthetic_norms(30) if n.boe_id == leaving)
    boe.faults.after_page = [lambda s: s.norms.pop(leaving)]
    first = run(boe, tmp_path, encoder, full=True, page=10)
    assert not first.removed and laws(tmp_path) >= set(estatal(boe)), "no live norm lost at the page boundary"
    report = run(boe, tmp_path, encoder, full=True, page=10)
    assert report.removed == [leaving] and laws(tmp_path) == set(estatal(boe)), "only the norm that left"


def test_an_ignored_sort_with_reshuffled_ties_and_updates_between_pages_removes_nothing(boe, tmp_path, encoder):
    run(boe, tmp_path, encoder)
    for norm in boe.norms.values():
        norm.fecha_actualizacion = "20240101T000000Z"  # all tied: the default order reshuffles them every call
    boe.faults.ignore_sort = True
    boe.faults.after_page = [lambda s: setattr(s.norms[estatal(s)[0]], "fecha_actualizacion", "20991231T000000Z")]
    report = run(boe, tmp_path, encoder, full=True, page=4)
    assert "the API did not answer in id order" in report.doubts and not report.removed
    assert laws(tmp_path) == set(estatal(boe)), "no live norm lost"
    boe.faults.clear()
    assert not run(boe, tmp_path, encoder, full=True).doubts


@pytest.mark.parametrize("missing", ["ambito", "identificador", "fecha_actualizacion", "vigencia_agotada"])
def test_items_missing_a_field_cause_no_removal(boe, tmp_path, encoder, missing) -> None:
    vigentes = missing == "vigencia_agotada"
    run(boe, tmp_path, encoder, selection={"vigentes": vigentes})
    before = laws(tmp_path)
    boe.faults.missing = {missing: 0.5}
    boe.hits.clear()
    report = run(boe, tmp_path, encoder, full=True, selection={"vigentes": vigentes})
    assert laws(tmp_path) == before and not report.removed
    assert not set(fetched(boe)) & before, "nothing indexed fetched again for a missing field"
    if missing == "identificador":
        assert any("without an identificador" in d for d in report.doubts)


def test_a_new_norm_listed_without_ambito_is_decided_on_its_own_metadatos(boe, tmp_path, encoder) -> None:
    boe.faults.missing = {"ambito": 1.0}
    report = run(boe, tmp_path, encoder)
    assert laws(tmp_path) == set(estatal(boe)), "each norm's own metadatos say whether it is estatal"
    assert report.exit_code == 0


def test_one_run_removes_at_most_a_share_unless_confirmed(boe, tmp_path, encoder, monkeypatch, tiny_model) -> None:
    run(boe, tmp_path, encoder)
    monkeypatch.setattr(sync_module, "REMOVAL_FLOOR", 3)
    withdrawn = estatal(boe)[:4]
    for boe_id in withdrawn:
        del boe.norms[boe_id]
    refused = run(boe, tmp_path, encoder, full=True)
    assert refused.exit_code == 1 and not refused.removed and set(withdrawn) <= laws(tmp_path)
    assert refused.problems() == [refused.refused] and "--allow-removals" in refused.refused
    monkeypatch.setenv("LEGALSEARCH_BOE_API", boe.url)
    base = ["sync", "--index", str(tmp_path / "idx"), "--rate", "1000", "--cache", str(tmp_path / "cache"), "--full"]
    cli = runner.invoke(app, base)
    assert cli.exit_code == 1 and "refused to remove 4 norms" in cli.output
    confirmed = runner.invoke(app, [*base, "--allow-removals", "--json"])
    assert confirmed.exit_code == 0 and sorted(json.loads(confirmed.stdout)["removed"]) == withdrawn


# --- 404s, empty texts, lagging endpoints -------------------------------------------------------------------


def test_an_empty_text_is_a_failure_not_a_law(boe, tmp_path, encoder) -> None:
    run(boe, tmp_path, encoder)
    target = estatal(boe)[0]
    old_text = boe.norms[target].articles[0][1]
    boe.norms[target].fecha_actualizacion = "20991231T000000Z"
    boe.norms[target].articles[0] = ("Nuevo", f"Texto nuevo de {target} sobre la prórroga.")
    boe.faults.empty_texts[target] = 1
    report = run(boe, tmp_path, encoder)
    assert list(report.failed) == [target] and "empty text" in report.failed[target] and report.exit_code == 1
    search = LegalSearch.open(tmp_path / "idx")
    assert len(search.law(target)["units"]) > 0, "the good text is kept"
    assert any(old_text[:30] in h.text for h in search.search(old_text, k=5, mode="lexical") if h.boe_id == target)
    again = run(boe, tmp_path, encoder)
    assert again.changed == [target] and again.exit_code == 0
    hits = LegalSearch.open(tmp_path / "idx").search(f"Texto nuevo de {target}", k=1, mode="lexical")
    assert hits[0].boe_id == target and "nuevo" in hits[0].text


def test_a_lagging_norm_endpoint_is_asked_again_until_it_answers(boe, tmp_path, encoder) -> None:
    run(boe, tmp_path, encoder)
    fresh = synthetic_norms(1, seed=3, start="2099-12-30")[0]
    fresh.boe_id, fresh.ambito = "BOE-A-2099-90001", "1"
    boe.norms[fresh.boe_id] = fresh
    boe.faults.lagging[fresh.boe_id] = 2  # listed, but its endpoint answers 404 twice
    for expected in (["BOE-A-2099-90001"], ["BOE-A-2099-90001"], []):
        report = run(boe, tmp_path, encoder)
        assert report.missing == expected and report.exit_code == 0
    assert fresh.boe_id in laws(tmp_path)


# --- commit as it goes; resume what was done ----------------------------------------------------------------


KILLED = """
import os, sys
from pathlib import Path
from legalsearch import sync
from legalsearch.embedding import load_encoder
from legalsearch.sources.fetch import BOEClient
client = BOEClient(cache=Path(sys.argv[3]), base_url=sys.argv[2], backoff=0.01, timeout=5)
seen = {"fetch": 0}
def progress(stage, done, total):  # killed while embedding the third batch (two committed)
    seen[stage] = max(seen.get(stage, 0), done)
    if stage == "fetch" and done >= 12:
        seen["armed"] = True
    if stage == "embed" and done > 0 and seen.get("armed"):
        os.kill(os.getpid(), 9)
options = sync.SyncOptions(rate=1000, batch_norms=5)
sync.sync(Path(sys.argv[4]), options, client, encoder=load_encoder(sys.argv[1]), progress=progress)
"""


def test_a_first_sync_commits_in_batches_and_a_kill_loses_at_most_one(boe, tmp_path, encoder, tiny_model) -> None:
    whole = run(boe, tmp_path / "whole", encoder, batch_norms=5)
    assert whole.batches == 5 and whole.embedded == chunks_of(tmp_path / "whole" / "idx")
    commits = [c for c in store_commits(tmp_path / "whole" / "idx")]
    assert len(commits) >= 5, "each batch is an ordinary commit"
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLED))
    command = [sys.executable, str(script), str(tiny_model), boe.url, str(tmp_path / "cache"), str(tmp_path / "idx")]
    assert subprocess.run(command, env={**os.environ, "PYTHONPATH": str(REPO)}).returncode == -9
    held = laws(tmp_path)
    assert len(held) == 10, "two batches of five were committed and are searchable"
    committed = chunks_of(tmp_path / "idx")
    boe.hits.clear()
    resumed = run(boe, tmp_path, encoder, batch_norms=5)
    assert laws(tmp_path) == set(estatal(boe)) and resumed.exit_code == 0
    assert resumed.embedded == whole.embedded - committed, "no chunk of a committed batch embedded again"
    assert not set(fetched(boe)) & held, "nor fetched again"


def store_commits(index: Path) -> list:
    connection = store.connect(index / store.DATABASE)
    try:
        return connection.execute("SELECT id FROM commits").fetchall()
    finally:
        connection.close()


def test_the_window_starts_at_the_start_of_the_last_run(boe, tmp_path, encoder) -> None:
    first = run(boe, tmp_path, encoder)
    second = run(boe, tmp_path, encoder)
    started = datetime.datetime.fromisoformat(first.started.replace("Z", "+00:00"))
    assert second.listing == f"window since {(started - datetime.timedelta(days=1)).strftime('%Y%m%d')}"


# --- polite and quick when the API is down ------------------------------------------------------------------


def test_a_down_api_stops_the_run_and_the_next_one_continues(boe, tmp_path, encoder) -> None:
    for boe_id in boe.norms:
        boe.faults.errors[NORM_PATH + boe_id] = 99  # the norm endpoints are down
    report = run(boe, tmp_path, encoder)
    assert report.stopped and report.exit_code == 1 and report.problems() == [report.stopped]
    assert "stopped after 5 norms in a row failed" in report.stopped and "HTTP 503" in report.stopped
    assert len(fetched(boe)) == 5 * 3, "five norms, three tries each; the rest not asked"
    assert len(report.pending) == len(estatal(boe)) - 5
    boe.faults.clear()
    again = run(boe, tmp_path, encoder)
    assert laws(tmp_path) == set(estatal(boe)) and again.exit_code == 0


def test_retry_after_is_honoured_and_the_pace_slows_after_a_429(boe, tmp_path) -> None:
    target = estatal(boe)[0]
    boe.faults.errors[NORM_PATH + target] = 1
    boe.faults.status, boe.faults.retry_after = 429, "1"
    api = BOEClient(cache=tmp_path, base_url=boe.url, backoff=0.01, delay=0.01)
    api.get(target)
    assert api.waited == 1.0 and api.throttled == 1 and api.delay == 1.0, "waited as asked, then slower"
    boe.faults.errors[NORM_PATH + target] = 3
    boe.faults.status, boe.faults.retry_after = 503, None
    with pytest.raises(FetchError, match="answered HTTP 503 Service Unavailable 3 times") as error:
        BOEClient(cache=tmp_path, base_url=boe.url, backoff=0.01).get(target, refresh=True)
    assert "check the network" not in str(error.value)
    boe.faults.errors[NORM_PATH + target] = 1
    boe.faults.status, boe.faults.retry_after = 429, "3600"
    with pytest.raises(FetchError, match="asked to wait 3,600 s"):
        BOEClient(cache=tmp_path, base_url=boe.url, backoff=0.01).get(target, refresh=True)
    now = datetime.datetime(2015, 10, 21, 7, 27, 30, tzinfo=datetime.UTC)
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 30.0 and retry_after("12") == 12.0
    assert retry_after("soon") is None


@pytest.mark.parametrize(
    "api", ["file:///etc", "ftp://www.boe.es/datosabiertos/api", "data:text/plain,x", "http://www.boe.es/api"]
)
def test_only_https_or_loopback_http_api_roots(api, tmp_path) -> None:
    with pytest.raises(UsageError, match="must be an https:// URL"):
        BOEClient(cache=tmp_path, base_url=api).check()
    result = runner.invoke(app, ["sync", "--index", str(tmp_path / "idx"), "--api", api])
    assert result.exit_code == 2 and "must be an https:// URL" in result.output and "Traceback" not in result.output
    BOEClient(cache=tmp_path, base_url="https://www.boe.es/datosabiertos/api").check()
    BOEClient(cache=tmp_path, base_url="http://127.0.0.1:8099/datosabiertos/api").check()


def test_redirects_stay_on_the_api_host_and_answers_are_capped(boe, tmp_path) -> None:
    target, other = estatal(boe)[:2]
    boe.faults.redirects[NORM_PATH + target] = NORM_PATH + other  # the same host: followed
    assert b"<response" in BOEClient(cache=tmp_path, base_url=boe.url).get(target).read_bytes()
    port = boe.url.split(":")[2].split("/")[0]
    boe.faults.redirects[NORM_PATH + target] = f"http://localhost:{port}{NORM_PATH}{other}"  # another host
    with pytest.raises(FetchError, match="another host: not followed"):
        BOEClient(cache=tmp_path, base_url=boe.url).get(target, refresh=True)
    boe.faults.redirects.clear()
    with pytest.raises(FetchError, match="over the 500 bytes read at most"):
        BOEClient(cache=tmp_path, base_url=boe.url, max_bytes=500).get(target, refresh=True)


# --- options that do what they say --------------------------------------------------------------------------


def test_a_changed_selection_replans_against_the_whole_catalogue(boe, tmp_path, encoder) -> None:
    run(boe, tmp_path, encoder)
    everything = run(boe, tmp_path, encoder, selection={"ambito": "todo", "vigentes": True})
    assert everything.listing == "full" and laws(tmp_path) == set(boe.norms)
    leyes = {b for b, n in boe.norms.items() if n.rango == "1300"}
    narrower = run(boe, tmp_path, encoder, selection={"ambito": "todo", "rangos": ("Ley",)}, allow_removals=True)
    assert narrower.listing == "full" and laws(tmp_path) == leyes
    assert run(boe, tmp_path, encoder, selection={"ambito": "todo", "rangos": ("Ley",)}).listing.startswith("window")


def test_diario_marks_only_days_read_and_honours_the_selection(boe, tmp_path, encoder) -> None:
    today = datetime.date.today()
    days = [today - datetime.timedelta(days=n) for n in (3, 2, 1)]
    published = synthetic_norms(3, seed=7, start="2099-11-02")
    for norm, day in zip(published, days, strict=True):
        norm.boe_id = norm.boe_id.replace("-1000", "-8000")
        norm.fecha_publicacion = day.strftime("%Y%m%d")
        boe.diario[day.strftime("%Y%m%d")] = [norm]
    community = published[1]
    community.departamento = ("5000", "Comunidad Autónoma de Aragón")
    boe.faults.errors["/datosabiertos/api/boe/sumario/" + days[2].strftime("%Y%m%d")] = 99  # yesterday fails
    report = run(boe, tmp_path, encoder, diario=True, since=days[0].isoformat())
    assert report.diario == [published[0].boe_id], "the community's norm is not estatal; yesterday failed"
    assert report.diario_until == days[1].isoformat(), "marked up to the last day read"
    boe.faults.clear()
    again = run(boe, tmp_path, encoder, diario=True)
    assert again.diario == [published[2].boe_id] and again.diario_until == days[2].isoformat(), "today: no BOE yet"
    ids = tmp_path / "ids.txt"
    ids.write_text(community.boe_id + "\n")
    chosen = run(boe, tmp_path / "few", encoder, diario=True, since=days[0].isoformat(),
                 selection={"ids": frozenset([community.boe_id])})  # fmt: skip
    assert chosen.diario == [community.boe_id]


def test_the_report_counts_annulled_norms_and_unknown_ids_and_bad_id_files(boe, tmp_path, encoder) -> None:
    annulled = estatal(boe)[0]
    boe.norms[annulled].estatus_anulacion = "S"
    report = run(boe, tmp_path, encoder)
    assert annulled in report.derogated and LegalSearch.open(tmp_path / "idx").law(annulled)["status"] != "vigente"
    unknown = run(boe, tmp_path / "few", encoder, selection={"ids": frozenset([annulled, "BOE-A-1900-1"])})
    assert unknown.unknown_ids == ["BOE-A-1900-1"]
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{annulled}\nnot-an-id\n")
    result = runner.invoke(app, ["sync", "--index", str(tmp_path / "x"), "--ids", str(bad), "--api", boe.url])
    assert result.exit_code == 2 and f"{bad}:2" in result.output and "not-an-id" in result.output


def test_a_failed_listing_still_prints_the_json_report(boe, tmp_path, monkeypatch) -> None:
    boe.faults.listing = ["error"]
    result = runner.invoke(app, ["sync", "--index", str(tmp_path / "idx"), "--api", boe.url, "--json",
                                 "--cache", str(tmp_path / "cache")])  # fmt: skip
    assert result.exit_code == 1 and json.loads(result.stdout)["listing_error"].startswith("listing the catalogue")


# --- the stand-in as a program ------------------------------------------------------------------------------


def real_api_folder() -> Path:
    """The sample's real API XML: an `/id/` answer, a `/texto` answer with its diario document, diario documents."""
    from tests.test_sync import SAMPLES

    return SAMPLES.parent / "laws" / "xml"


def test_the_stand_in_program_serves_a_folder_of_real_api_files(tmp_path, tiny_model) -> None:
    folder = real_api_folder()
    help_text = subprocess.run([sys.executable, "-m", "legalsearch.standin", "--help"], capture_output=True,
                               text=True, cwd=REPO)  # fmt: skip
    assert help_text.returncode == 0 and "--catalogue" in help_text.stdout and "outage=N" in help_text.stdout
    bad = subprocess.run([sys.executable, "-m", "legalsearch.standin", "--catalogue", str(folder), "--fault",
                          "meteor"], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert bad.returncode == 2 and "unknown fault 'meteor'" in bad.stderr
    server = subprocess.Popen([sys.executable, "-m", "legalsearch.standin", "--port", "0", "--catalogue",
                               str(folder), "--fault", "page-cap=1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/datosabiertos/api")
        command = ["sync", "--index", str(tmp_path / "idx"), "--api", url, "--model", str(tiny_model),
                   "--cache", str(tmp_path / "cache"), "--rate", "100"]  # fmt: skip
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        search = LegalSearch.open(tmp_path / "idx")
        assert {law["boe_id"] for law in search.laws()} == {"BOE-A-1835-2348", "BOE-A-1978-31229"}
        assert search.article("BOE-A-1978-31229", "a14") is not None, "the Constitution, article by article"
    finally:
        server.terminate()
        server.wait()
    assert "skipped" in server.stderr.read()


def test_the_stand_in_reads_real_api_answers() -> None:
    from legalsearch.standin import load_folder

    found = load_folder(real_api_folder())
    assert sorted(n.boe_id for n in found.norms) == ["BOE-A-1835-2348", "BOE-A-1978-31229"]
    for norm in found.norms:
        assert isinstance(norm, Norm) and norm.titulo and b"<bloque" in norm.document()
        item = norm.item()
        assert item["identificador"] == norm.boe_id and item["ambito"]["codigo"] == "1"
        assert norm.fecha_actualizacion[8] == "T" and item["fecha_actualizacion"] == norm.fecha_actualizacion
    assert {n.boe_id for n in found.diario} == {"BOE-A-1989-22056", "BOE-A-2015-11430", "BOE-A-2023-16215"}
    assert all(b"<documento" in n.diario() for n in found.diario)
