"""A property of `legalsearch sync` over random bad days of the API (hypothesis): whatever faults the stand-in
produces in a few sync rounds — empty and error envelopes, garbage, short pages, ignored sort, items missing
fields, outages, 503s, lagging endpoints, empty texts, norms leaving between pages — while the catalogue itself
changes, the index never loses a norm the catalogue still lists; and one run once the API answers cleanly leaves
it an exact mirror (every listed norm, at its current update, nothing else)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legalsearch import sync as sync_module
from legalsearch.search import LegalSearch
from legalsearch.sources.fetch import BOEClient
from legalsearch.standin import LISTING_FAULTS, StandIn, synthetic_norms

NORMS = 8
NORM_PATH = "/datosabiertos/api/legislacion-consolidada/id/"

picks = st.lists(st.integers(0, NORMS - 1), max_size=3, unique=True)
faults = st.fixed_dictionaries({
    "listing": st.lists(st.sampled_from(LISTING_FAULTS), max_size=3),
    "page_cap": st.sampled_from([10_000, 3, 1]),
    "ignore_sort": st.booleans(),
    "missing": st.dictionaries(st.sampled_from(["ambito", "identificador", "fecha_actualizacion"]),
                               st.sampled_from([0.3, 1.0]), max_size=2),
    "outage": st.sampled_from([0, 0, 2, 40]),
    "errors": picks, "lagging": picks, "empty_texts": picks,
    "leaves_between_pages": st.booleans(),
})  # fmt: skip
changes = st.fixed_dictionaries({"delete": picks, "update": picks, "add": st.integers(0, 2)})
rounds = st.lists(st.tuples(changes, faults, st.booleans()), min_size=1, max_size=3)


class World:
    """The stand-in's catalogue as it changes, and the index that mirrors it."""

    def __init__(self, boe: StandIn, work: Path, encoder) -> None:
        self.boe, self.work, self.encoder, self.made = boe, work, encoder, 0
        self.add(NORMS)

    def add(self, count: int) -> None:
        for norm in synthetic_norms(count, seed=self.made, articles=1, start="2024-03-01"):
            norm.boe_id = f"BOE-A-2024-{50000 + self.made}"
            norm.ambito = "1"
            self.boe.norms[norm.boe_id] = norm
            self.made += 1

    def change(self, wanted: dict) -> None:
        ids = sorted(self.boe.norms)
        for n in wanted["delete"]:
            if n < len(ids) and len(self.boe.norms) > 1:
                self.boe.norms.pop(ids[n], None)
        for n in wanted["update"]:
            norm = self.boe.norms.get(ids[n]) if n < len(ids) else None
            if norm is not None:
                self.made += 1
                norm.fecha_actualizacion = f"2099{self.made // 28 % 12 + 1:02d}{self.made % 28 + 1:02d}T120000Z"
                norm.articles[0] = (norm.articles[0][0], f"Texto reformado {self.made} de {norm.boe_id}.")
        self.add(wanted["add"])

    def break_api(self, wanted: dict) -> None:
        f = self.boe.faults
        f.listing, f.page_cap, f.ignore_sort = list(wanted["listing"]), wanted["page_cap"], wanted["ignore_sort"]
        f.missing, f.outage = dict(wanted["missing"]), wanted["outage"]
        ids = sorted(self.boe.norms)
        for name in ("errors", "lagging", "empty_texts"):
            for n in wanted[name]:
                if n < len(ids):
                    key = NORM_PATH + ids[n] if name == "errors" else ids[n]
                    getattr(f, name)[key] = 2
        if wanted["leaves_between_pages"] and len(ids) > 2:
            f.after_page = [lambda s, gone=ids[1]: s.norms.pop(gone, None)]

    def sync(self, full: bool) -> sync_module.SyncReport:
        client = BOEClient(cache=self.work / "cache", base_url=self.boe.url, backoff=0.001, timeout=2)
        options = sync_module.SyncOptions(rate=10_000, full=full, page=5)
        return sync_module.sync(self.work / "idx", options, client, encoder=self.encoder)

    def indexed(self) -> dict[str, str]:
        if not (self.work / "idx").exists():
            return {}
        return {law["boe_id"]: law["fecha_actualizacion"] for law in LegalSearch.open(self.work / "idx").laws()}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])  # fmt: skip
@given(schedule=rounds)
def test_bad_days_never_lose_a_listed_norm_and_a_clean_day_mirrors(encoder, schedule) -> None:
    with StandIn() as boe, tempfile.TemporaryDirectory() as work:
        world = World(boe, Path(work), encoder)
        world.sync(full=True)
        assert set(world.indexed()) == set(boe.norms)
        for wanted_changes, wanted_faults, full in schedule:
            world.change(wanted_changes)
            held = set(world.indexed())
            world.break_api(wanted_faults)
            report = world.sync(full)
            still_listed = set(boe.norms)
            lost = (held & still_listed) - set(world.indexed())
            assert not lost, f"lost {sorted(lost)} on a bad day: {wanted_faults}; {report.to_dict()}"
            boe.faults.clear()
        world.sync(full=True)
        mirror = world.indexed()
        current = {b: f"{n.fecha_actualizacion[:4]}-{n.fecha_actualizacion[4:6]}-{n.fecha_actualizacion[6:8]}"
                   for b, n in boe.norms.items()}  # fmt: skip
        assert mirror == current, "an exact mirror once the API answers cleanly, each norm at its current update"
