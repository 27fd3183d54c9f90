"""`legalsearch sync` against the local stand-in of the BOE API (legalsearch/standin.py), in three parts:

1. listing and planning a full sync of a catalogue the size of the real one (12,400 synthetic norms), fetching
   and embedding excluded: wall time and peak RSS (targets: <= 30 s, <= 300 MB);
2. an end-to-end first sync of --norms small norms (default 500) with the tiny random model of the tests (no
   download): requests per second achieved against the stand-in at --rate, parse and index rates, and that the
   index holds exactly what the catalogue selects; then a daily run with 20 norms changed;
3. an extrapolation of a first full sync and of a typical daily update (8-30 re-consolidated norms) of the real
   catalogue, on this CPU and on a GPU, from the measured rates and the embedding rates of bench/backends.py and
   bench/gpu.py (recorded in the README).

    python bench/sync.py [--norms 500] [--rate 50] [--catalogue 12400]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import peak_rss_mb

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--norms", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--catalogue", type=int, default=12_400)
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
        stages: dict[str, list[float]] = {}

        def progress(stage: str, done: int, total: int) -> None:
            times = stages.setdefault(stage, [time.perf_counter(), time.perf_counter(), 0])
            times[1], times[2] = time.perf_counter(), total

        started = time.perf_counter()
        report = sync.sync(work / "idx", sync.SyncOptions(rate=args.rate), client, encoder=encoder, progress=progress)
        wall = time.perf_counter() - started
        held = {law["boe_id"] for law in LegalSearch.open(work / "idx").laws()}
        assert held == set(boe.norms), "the index holds exactly what the catalogue selects"
        fetch_s = stages["fetch"][1] - stages["fetch"][0]
        print(f"2. first sync of {len(norms)} norms: {wall:.1f} s; fetch {report.fetched} norms in {fetch_s:.1f} s "
              f"= {report.fetched / fetch_s:.1f} requests/s at --rate {args.rate:g}; index holds exactly the "
              f"{len(held)} selected norms ({report.chunks:,} chunks)")  # fmt: skip
        for stage in ("parse", "embed", "write"):
            if stage in stages:
                first, last, total = stages[stage]
                rate = total / max(last - first, 1e-9)
                print(f"   {stage:6} {total:6,} in {last - first:6.1f} s = {rate:8.1f}/s")
        print("   (embed with the tiny random model: not the cost of a real one; see 3.)")
        for norm in norms[:20]:
            norm.fecha_actualizacion = "20991231T000000Z"
            norm.articles[0] = (norm.articles[0][0], norm.articles[0][1] + " Texto modificado.")
        started = time.perf_counter()
        daily = sync.sync(work / "idx", sync.SyncOptions(rate=args.rate), client, encoder=encoder)
        print(f"   a daily run with 20 changed norms: {time.perf_counter() - started:.1f} s, {len(daily.changed)} "
              f"fetched, {daily.embedded} chunks embedded, {daily.requests - report.requests} requests")  # fmt: skip
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
