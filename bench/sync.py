"""`legalsearch sync` against the local stand-in of the BOE API (legalsearch/standin.py), in three parts:

1. listing and planning a full sync of a catalogue the size of the real one (12,400 synthetic norms), fetching
   and embedding excluded: wall time and peak RSS (targets: <= 30 s, <= 300 MB);
2. an end-to-end first sync of --norms small norms (default 500) with the tiny random model of the tests (no
   download): requests per second achieved against the stand-in at --rate, parse and index rates, and that the
   index holds exactly what the catalogue selects; then a daily run with 20 norms changed;
3. an extrapolation of a first full sync and of a typical daily update (8-30 re-consolidated norms) of the real
   catalogue, on this CPU and on a GPU, from the measured rates and the embedding rates of bench/backends.py and
   bench/gpu.py (recorded in the README);
4. a first sync killed (kill -9) while embedding a batch, then run again: how many chunks the rerun embedded
   again (work lost to the kill) beside what it had left to do;
5. an outage: the norm endpoints answer 503 from the --outage-at-th norm on, with the client's default retries
   and backoff: the requests and seconds the run spends before it stops (circuit breaker), against what each
   remaining norm would have cost without one.

    python bench/sync.py [--norms 500] [--rate 50] [--catalogue 12400] [--batch 50] [--outage-at 50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from common import ROOT, peak_rss_mb

from legalsearch import sync
from legalsearch.embedding import load_encoder
from legalsearch.search import LegalSearch
from legalsearch.sources.fetch import BOEClient
from legalsearch.standin import StandIn, synthetic_norms
from legalsearch.testing import build_random_xlmr

EMBED_RATES = {  # chunks/s of a model of the legal model's size (XLM-R large), measured (README)
    "this CPU (2 cores, openvino bf16, 256 tokens)": sync.CPU_CHUNKS_PER_S,
    "one H200 (torch fp16, 512-token chunks)": sync.GPU_CHUNKS_PER_S,
}


def plan_only(catalogue: int) -> dict:
    """Run in its own process: list and plan a full sync of `catalogue` norms (dry run), peak RSS from VmHWM."""
    with StandIn() as boe, tempfile.TemporaryDirectory() as work:
        for norm in synthetic_norms(catalogue, articles=1):
            boe.norms[norm.boe_id] = norm
        client = BOEClient(cache=Path(work) / "cache", base_url=boe.url)
        started = time.perf_counter()
        report = sync.sync(
            Path(work) / "idx", sync.SyncOptions(sync.Selection("todo"), rate=1000, dry_run=True), client
        )
        seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    return {"seconds": seconds, "peak_mb": peak, "listed": report.listed, "to_fetch": report.estimate["fetch"],
            "requests": report.requests}  # fmt: skip


KILLED = """
import os, sys
from pathlib import Path
from legalsearch import sync
from legalsearch.embedding import load_encoder
from legalsearch.sources.fetch import BOEClient
model, url, cache, index, batch, kill_after = sys.argv[1:7]
client = BOEClient(cache=Path(cache), base_url=url)
seen = {}
def progress(stage, done, total):  # killed while embedding the batch after `kill_after` norms were fetched
    if stage == "fetch" and done >= int(kill_after):
        seen["armed"] = True
    if stage == "embed" and done > 0 and seen.get("armed"):
        print(done, flush=True)
        os.kill(os.getpid(), 9)
options = sync.SyncOptions(rate=1000, batch_norms=int(batch))
sync.sync(Path(index), options, client, encoder=load_encoder(model), progress=progress)
"""


def kill_and_resume(boe: StandIn, model: Path, work: Path, batch: int, encoder) -> None:
    """A first sync killed while embedding a batch past the middle, then run again."""
    script = work / "killed.py"
    script.write_text(textwrap.dedent(KILLED))
    total = len(boe.norms)
    kill_after = (total // 2 // batch + 1) * batch
    command = [sys.executable, str(script), str(model), boe.url, str(work / "kcache"), str(work / "kidx"),
               str(batch), str(kill_after)]  # fmt: skip
    killed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    embedding_when_killed = int((killed.stdout.strip().splitlines() or ["0"])[-1])
    held = LegalSearch.open(work / "kidx")
    committed_laws, committed_chunks = len(held.laws()), held.manifest["counts"]["chunks"]
    client = BOEClient(cache=work / "kcache", base_url=boe.url)
    started = time.perf_counter()
    resumed = sync.sync(work / "kidx", sync.SyncOptions(rate=1000, batch_norms=batch), client, encoder=encoder)
    seconds = time.perf_counter() - started
    left = resumed.chunks - committed_chunks
    print(f"4. kill -9 while embedding (exit {killed.returncode}) a first sync of {total} norms in batches of "
          f"{batch}: {committed_laws} norms ({committed_chunks:,} chunks) were committed and searchable; the batch "
          f"being embedded had {embedding_when_killed} chunks done (lost). The rerun fetched "
          f"{resumed.fetched} norms and embedded {resumed.embedded:,} chunks for the {left:,} left: "
          f"{resumed.embedded - left:,} chunks of committed batches embedded again; {seconds:.1f} s "
          f"(before batching: every chunk embedded again)")  # fmt: skip


def outage_cost(boe: StandIn, work: Path, outage_at: int, encoder) -> None:
    """The norm endpoints answer 503 from the `outage_at`-th norm on: what the run spends before it stops."""
    ids = sorted(boe.norms)
    for boe_id in ids[outage_at:]:
        boe.faults.errors[f"/datosabiertos/api/legislacion-consolidada/id/{boe_id}"] = 10**6
    client = BOEClient(cache=work / "ocache", base_url=boe.url)  # the defaults: 3 tries, backoff 2 s and 4 s
    started = time.perf_counter()
    report = sync.sync(work / "oidx", sync.SyncOptions(rate=1000), client, encoder=encoder)
    seconds = time.perf_counter() - started
    boe.faults.errors.clear()
    during = sum(1 for p, _, _ in boe.hits if p.rsplit("/", 1)[-1] in set(ids[outage_at:]))
    remaining = len(ids) - outage_at
    per_norm = sum(client.backoff * 2**a for a in range(client.retries - 1))
    print(f"5. outage from norm {outage_at} of {len(ids)} (503 on every norm endpoint): the run stopped after "
          f"{during} requests to the down endpoints and {seconds:.1f} s in all (exit {report.exit_code}: "
          f"{report.stopped}); without the breaker each of the {remaining} remaining norms costs {client.retries} "
          f"requests and {per_norm:.0f} s of backoff: {remaining * client.retries:,} requests, "
          f"~{remaining * per_norm / 60:.0f} min")  # fmt: skip
    client = BOEClient(cache=work / "ocache", base_url=boe.url)
    started = time.perf_counter()
    again = sync.sync(work / "oidx", sync.SyncOptions(rate=1000), client, encoder=encoder)
    print(f"   the next run, the API back: {len(again.changed) + len(again.new)} norms fetched, exit "
          f"{again.exit_code}, {time.perf_counter() - started:.1f} s; the index holds "
          f"{len(LegalSearch.open(work / 'oidx').laws())} norms")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--norms", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--catalogue", type=int, default=12_400)
    parser.add_argument("--batch", type=int, default=50, help="norms a commit (4.)")
    parser.add_argument("--outage-at", type=int, default=50, help="the norm the outage starts at (5.)")
    parser.add_argument("--plan-only", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plan_only:
        print(json.dumps(plan_only(args.plan_only)))
        return 0
    probe = subprocess.run([sys.executable, __file__, "--plan-only", str(args.catalogue)], capture_output=True,
                           text=True, check=True)  # fmt: skip
    planned = json.loads(probe.stdout.strip().splitlines()[-1])
    print(f"1. listing + planning a full sync of {planned['listed']:,} norms: {planned['seconds']:.1f} s, "
          f"{planned['requests']} requests, peak RSS {planned['peak_mb']:.0f} MB (targets: 30 s, 300 MB)")  # fmt: skip
    with StandIn() as boe, tempfile.TemporaryDirectory() as work:
        work = Path(work)
        norms = synthetic_norms(args.norms, articles=3)
        for norm in norms:
            norm.ambito = "1"
            boe.norms[norm.boe_id] = norm
        model = build_random_xlmr(work / "model", " ".join(t for n in norms[:50] for _, t in n.articles))
        encoder = load_encoder(str(model))
        client = BOEClient(cache=work / "cache", base_url=boe.url)
        fetching = {"seconds": 0.0, "at": None}  # time between consecutive fetch ticks: fetching only

        def progress(stage: str, done: int, total: int) -> None:
            now = time.perf_counter()
            if stage == "fetch" and fetching["at"] is not None:
                fetching["seconds"] += now - fetching["at"]
            fetching["at"] = now if stage == "fetch" else None

        started = time.perf_counter()
        report = sync.sync(work / "idx", sync.SyncOptions(rate=args.rate), client, encoder=encoder, progress=progress)
        wall = time.perf_counter() - started
        held = {law["boe_id"] for law in LegalSearch.open(work / "idx").laws()}
        assert held == set(boe.norms), "the index holds exactly what the catalogue selects"
        fetch_s = fetching["seconds"]
        print(f"2. first sync of {len(norms)} norms: {wall:.1f} s in {report.batches} commits; fetch "
              f"{report.fetched} norms in {fetch_s:.1f} s = {report.fetched / fetch_s:.1f} requests/s at --rate "
              f"{args.rate:g}; parse, embed and write {report.embedded:,} chunks {wall - fetch_s:.1f} s; the index "
              f"holds exactly the {len(held)} selected norms ({report.chunks:,} chunks)")  # fmt: skip
        print("   (embed with the tiny random model: not the cost of a real one; see 3.)")
        for norm in norms[:20]:
            norm.fecha_actualizacion = "20991231T000000Z"
            norm.articles[0] = (norm.articles[0][0], norm.articles[0][1] + " Texto modificado.")
        started = time.perf_counter()
        daily = sync.sync(work / "idx", sync.SyncOptions(rate=args.rate), client, encoder=encoder)
        print(f"   a daily run with 20 changed norms: {time.perf_counter() - started:.1f} s, {len(daily.changed)} "
              f"fetched, {daily.embedded} chunks embedded, {daily.requests - report.requests} requests")  # fmt: skip
        kill_and_resume(boe, model, work, args.batch, encoder)
        boe.hits.clear()
        outage_cost(boe, work, min(args.outage_at, len(norms) - 1), encoder)
    per_norm_fetch = 1 / 2.0  # the default --rate: 2 requests/s against the real BOE, one request a norm
    print("3. extrapolated to the real catalogue (12,400 norms, ~0.5 M chunks), fetch at the default --rate 2:")
    for where, rate in EMBED_RATES.items():
        full = 12_400 * per_norm_fetch + 12_400 * sync.CHUNKS_PER_NORM / rate
        daily_s = 30 * per_norm_fetch + 30 * sync.CHUNKS_PER_NORM / rate
        print(f"   {where}: first full sync ~{full / 3600:,.1f} h (fetch {12_400 * per_norm_fetch / 3600:.1f} h); "
              f"daily update of 30 norms ~{daily_s / 60:.1f} min")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
