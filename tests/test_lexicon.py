"""The lexicon of general legal vocabulary and the weighted expansion of the lexical side of a query."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from legalsearch import indexing
from legalsearch.lexicon import LEXICON_FILE, entries, expansion
from legalsearch.search import LegalSearch

TENANCY = """Ley 5/2099, de arrendamientos de prueba. BOE-A-2099-5
Artículo 1. Obligaciones del arrendatario.
El arrendatario deberá abonar la renta pactada dentro de los siete primeros días del mes.
Artículo 2. Duración.
La duración del contrato será la pactada por las partes.
"""


def test_the_lexicon_is_general_grouped_and_large() -> None:
    lines = LEXICON_FILE.read_text(encoding="utf-8").splitlines()
    groups = [line for line in lines if line.startswith("# ") and "(" in line]
    assert len(entries()) >= 300 and len(groups) >= 10, "each group says where its terms come from"
    assert all(len(line.split("\t")) == 2 for line in lines if line.strip() and not line.startswith("#"))
    assert entries()["inquilino"] == ("arrendatario",) and "desempleo" in entries()["paro"]


def test_expansion_finds_the_legal_terms_of_everyday_words() -> None:
    assert expansion("¿Qué derechos tiene un inquilino?") == "arrendatario"
    assert "contraer matrimonio" in expansion("requisitos para casarse")
    assert "despido" in expansion("me han despedido")
    assert expansion("arrendatario y arrendador") == "", "words the query already has are not added"


@pytest.fixture
def tenancy_index(tmp_path: Path, tiny_model: Path) -> Path:
    (tmp_path / "BOE-A-2099-5.txt").write_text(TENANCY, encoding="utf-8")
    indexing.build([str(tmp_path / "BOE-A-2099-5.txt")], tmp_path / "idx", model=str(tiny_model), dims=[32])
    return tmp_path / "idx"


def _with_weight(index: Path, weight: float) -> LegalSearch:
    manifest_file = index / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest["defaults"]["lexicon_weight"] = weight
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")
    return LegalSearch.open(index)


def test_expansion_lets_bm25_find_the_law_s_word_for_an_everyday_one(tenancy_index: Path) -> None:
    assert _with_weight(tenancy_index, 0.0).search("inquilino", k=2, mode="lexical") == [], "no word of the law"
    expanded = _with_weight(tenancy_index, 0.5)
    assert [h.article_id for h in expanded.search("inquilino", k=2, mode="lexical")] == ["a1"]
    own, extra = expanded.search("duración del contrato del inquilino", k=2, mode="lexical")
    assert (own.article_id, extra.article_id) == ("a2", "a1"), "the query's own words weigh more than the lexicon's"
