"""Load test of `legalsearch serve` on 127.0.0.1 against the Python API in-process, same concurrency, same
questions (../shared/eval/dev.jsonl), same fixed duration. Loopback only; bounded in time and requests.

    python bench/serve.py [--index DIR] [--clients 4] [--seconds 10] [--mode hybrid]
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from common import DEFAULT_SOURCES, DEV, ROOT, default_model, dev_questions

from legalsearch import indexing
from legalsearch.search import LegalSearch

MAX_REQUESTS = 20_000


def drive(call, questions: list[str], clients: int, seconds: float) -> dict:
    """`clients` threads calling `call(question)` in a loop for `seconds`; latencies and errors."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    cycle = itertools.cycle(questions)
    stop = time.monotonic() + seconds

    def worker() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            with lock:
                if len(latencies) + errors >= MAX_REQUESTS:
                    return
                question = next(cycle)
            start = time.perf_counter()
            try:
                call(question)
                ok = True
            except Exception:
                ok = False
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p95": float(np.percentile(ms, 95)) if len(ms) else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mode", default="hybrid")
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    if not DEV.exists():
        print(f"skipped: no {DEV}")
        return 0
    questions = dev_questions()
    index = args.index
    if index is None:
        index = Path(tempfile.mkdtemp()) / "idx"
        indexing.build([str(p) for p in DEFAULT_SOURCES], index, model=default_model(), device="cpu")

    search = LegalSearch.open(index)
    search.search(questions[0], k=args.k, mode=args.mode)  # warm: model, FAISS, BM25
    in_process = drive(lambda q: search.search(q, k=args.k, mode=args.mode), questions, args.clients, args.seconds)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "legalsearch", "serve", "--index", str(index), "--port", str(port)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            print("server did not start:", server.stderr.read() if server.poll() is not None else "")
            return 1
        local = threading.local()

        def call(question: str) -> None:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(base_url=base, timeout=60)
            response = client.post("/search", json={"query": question, "k": args.k, "mode": args.mode})
            response.raise_for_status()

        over_http = drive(call, questions, args.clients, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{args.clients} clients, {args.seconds:.0f} s each, mode {args.mode}, k {args.k}, "
          f"{search.manifest['counts']['chunks']} chunks ({Path(search.manifest['model']['id']).name})")  # fmt: skip
    print(f"{'':12} {'requests':>9} {'errors':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for name, r in (("in-process", in_process), ("HTTP", over_http)):
        print(f"{name:12} {r['requests']:9d} {r['errors']:7d} {r['rps']:8.1f} {r['p50']:8.1f} {r['p95']:8.1f}")
    print(f"HTTP throughput / in-process: {over_http['rps'] / in_process['rps']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
