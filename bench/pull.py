"""What `legalsearch pull` costs (issue 24, point 6): a release of the synthetic index of bench/scale.py served by a
local HTTP server on 127.0.0.1 (HTTP Range, its own process), pulled by a fresh process.

It reports: the full release's download size; the pull's wall time (download, sha256 of every file, installing:
FAISS and BM25 built here, the rename) against a plain copy of the same bytes over the same server (no checks,
no install), as a ratio; the pull's peak RSS; then the publisher changes 20 laws and publishes a delta: its size
against the full release's and the time the follower takes to pull and apply it.

    python bench/pull.py [--chunks 500000] [--dim 1024] [--workdir DIR]   (reuses DIR/index and DIR/out if there)
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import peak_rss_mb

from legalsearch import indexing, publish, release

BLOCK = 1 << 20


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Static files with `Range: bytes=N-`, streamed (never a whole file in memory)."""

    protocol_version = "HTTP/1.1"
    root = Path(".")

    def do_GET(self) -> None:
        path = (self.root / self.path.split("?", 1)[0].lstrip("/")).resolve()
        if self.root.resolve() not in path.parents or not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = path.stat().st_size
        start = 0
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[6:-1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            shutil.copyfileobj(f, self.wfile, BLOCK)

    def log_message(self, *args) -> None:
        pass


def serve(root: Path, port_file: Path) -> None:
    RangeHandler.root = root
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


def start_server(root: Path, work: Path) -> tuple[subprocess.Popen, str]:
    port_file = work / "port"
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(root), str(port_file)])
    while not port_file.exists() or not port_file.read_text():
        time.sleep(0.1)
    return process, f"http://127.0.0.1:{port_file.read_text()}"


# --- probes (each in a fresh process) -------------------------------------------------------------------------


def probe_copy(url: str, files: list[str], target: Path) -> dict:
    """A plain copy of the release's files over HTTP: what any downloader does, without checks or install."""
    shutil.rmtree(target, ignore_errors=True)
    started = time.perf_counter()
    for name in files:
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(f"{url}/{name}") as answer, open(path, "wb") as out:
            shutil.copyfileobj(answer, out, BLOCK)
            out.flush()
            os.fsync(out.fileno())
    seconds = time.perf_counter() - started
    shutil.rmtree(target, ignore_errors=True)
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def probe_pull(url: str, index: Path, key: Path | None) -> dict:
    from legalsearch import pull

    started = time.perf_counter()
    report = pull.pull(index, url, [key] if key else [])
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb(), "report": report.to_dict()}


def in_process(*arguments: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"probe {arguments} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- the run ----------------------------------------------------------------------------------------------------


def publisher(work: Path, chunks: int, dim: int, per_law: int) -> tuple[Path, Path, Path]:
    """The synthetic index (bench/scale.py), a key, and its first (full) release; reused when already there."""
    import scale

    index, out, key = work / "index", work / "out", work / "key"
    if not index.exists():
        seconds, _ = scale.build(index, chunks, dim, per_law)
        print(f"synthetic index: {chunks:,} chunks at {dim} dims built in {seconds:.0f} s")
    if not key.exists():
        release.generate_key(key)
    if not (out / release.MANIFEST).exists():
        started = time.perf_counter()
        publish.publish(index, out, key)
        print(f"published the full release in {time.perf_counter() - started:.0f} s")
    return index, out, key


def change_20_laws(index: Path, out: Path, key: Path, work: Path, dim: int, per_law: int) -> dict:
    import scale

    folder = work / "changed"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    # seeded by the release's sequence: a rerun in the same workdir changes the 20 laws again (a fixed seed gave
    # the texts the index already held, and an empty delta)
    sequence = json.loads((out / release.MANIFEST).read_text(encoding="utf-8"))["signed"]["sequence"]
    rng = np.random.default_rng(11 + sequence)
    texts = scale.corpus_texts()
    for number in range(500, 520):
        scale.law_file(folder, f"BOE-A-2000-{number}", texts, rng, per_law)
    indexing.build(sorted(str(p) for p in folder.glob("*.txt")), index, encoder=scale.SyntheticEncoder(dim),
                   max_tokens=512)  # fmt: skip
    report = publish.publish(index, out, key)
    return {"kind": report.kind, "bytes": report.bytes, "full_bytes": report.full_bytes, "reason": report.reason}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--per-law", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]))
        return 0
    if args.probe:
        kind, url = args.probe[0], args.probe[1]
        if kind == "copy":
            print(json.dumps(probe_copy(url, json.loads(args.probe[2]), Path(args.probe[3]))))
        else:
            key = Path(args.probe[3]) if len(args.probe) > 3 else None
            print(json.dumps(probe_pull(url, Path(args.probe[2]), key)))
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pull-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    index, out, key = publisher(work, args.chunks, args.dim, args.per_law)
    signed = json.loads((out / release.MANIFEST).read_text(encoding="utf-8"))["signed"]
    files = sorted(signed["full"]["files"])
    size = signed["full"]["bytes"]
    follower = work / "follower"
    shutil.rmtree(follower, ignore_errors=True)
    server, url = start_server(out, work)
    try:
        copy = in_process("--probe", "copy", url, json.dumps(files), str(work / "copy"))
        pulled = in_process("--probe", "pull", url, str(follower), str(Path(f"{key}.pub")))
        print(f"full release: {size / 1e9:.2f} GB in {len(files)} files ({signed['counts']['chunks']:,} chunks at "
              f"{args.dim} dims; target <= 3 GB)")  # fmt: skip
        print(f"plain copy over HTTP: {copy['seconds']:.1f} s ({size / copy['seconds'] / 1e6:.0f} MB/s)")
        fetched = pulled["report"]["download_seconds"]
        print(f"pull: {pulled['seconds']:.1f} s = {pulled['seconds'] / copy['seconds']:.2f}x the plain copy (target <= "
              f"1.3x); of which download + sha256 of every file {fetched:.1f} s = {fetched / copy['seconds']:.2f}x the "
              f"copy, install (catalogue, FAISS, BM25 built here, rename) {pulled['report']['apply_seconds']:.1f} s; "
              f"peak RSS {pulled['peak_rss_mb']:.0f} MB (target <= 500 MB)")  # fmt: skip
        delta = change_20_laws(index, out, key, work, args.dim, args.per_law)
        applied = in_process("--probe", "pull", url, str(follower))
        share = delta["bytes"] / delta["full_bytes"]
        print(f"20 changed laws: a {delta['kind']} of {delta['bytes'] / 1e6:.2f} MB = {100 * share:.3f} % of the full "
              f"release (target <= 1 %); pulled and applied in {applied['seconds']:.2f} s (target <= 10 s), peak RSS "
              f"{applied['peak_rss_mb']:.0f} MB; steps {applied['report']['steps']}")  # fmt: skip
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
