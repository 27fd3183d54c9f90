"""Browsing an index: a law and its units, one unit in any of its wordings, the diff between two wordings, the
units that changed, the `sync` runs — what the article pages, `legalsearch article/diff/changes`, the HTTP API and
MCP tools read. A part of `LegalSearch` (mixed in), reading the store only through `engines.base.Reader`."""

from __future__ import annotations

from dataclasses import asdict

from .citations import law_id, range_holds, short_name, unit_id
from .dates import check_day
from .errors import QueryError, UsageError
from .hits import cite
from .pinning import index_errors
from .wordings import Wording, law_url, norma_url, word_diff


class NoEarlierWordings(QueryError):
    """A diff asks for a wording the index does not hold: the law was indexed without its earlier wordings."""


class Browsing:
    """`LegalSearch`'s browsing methods (`self._reader` is the commit the current query reads)."""

    @index_errors
    def article_keys(self) -> set[str]:
        """ "<boe_id>#<article_id>" of every unit in the index."""
        return self._reader.article_keys()

    @index_errors
    def law(self, boe_id: str) -> dict | None:
        """A law's metadata and the list of its units (no texts), or None. `boe_id` may be the law's short name
        or number ("ET", "Ley 29/1994"), as for `article`."""
        boe_id = law_id(boe_id, self._titles()) or boe_id
        law = self._reader.law(boe_id)
        if law is None:
            return None
        law["units"] = self._reader.units_in_force(boe_id)
        return law

    @index_errors
    def laws(self) -> list[dict]:
        """Every law's metadata (as `law` gives it: `materias` a list, `referencias` a dict) and `articles`, how
        many units it has, in the order indexed."""
        return self._reader.laws()

    @index_errors
    def article(self, boe_id: str, article_id: str, as_of: str | None = None) -> dict | None:
        """One unit with its text, notes and version dates, or None: the wording in force, or with `as_of` the
        one in force that day (None if it did not exist yet). `wordings` lists every wording the index holds of
        it, oldest first (dates and links).

        Both take what a lawyer types (`unit`): `article("ET", "56")`, `article("BOE-A-2015-11430", "art. 56")`,
        `article("CC", "artículo 128")` (a unit covering a range of articles answers for each of them)."""
        if as_of is not None:
            check_date(as_of)
        boe_id, article_id = self.unit(boe_id, article_id)
        rows = self._reader.wordings(boe_id, article_id)
        if as_of is None:
            chosen = [r for r in rows if r["wording"] == ""]
        else:
            chosen = [r for r in rows if in_force(r["in_force_from"], r["version_until"], as_of)]
        if not chosen:
            return None
        data = dict(chosen[0])
        for own in ("in_force_from", "rango", "id", "position", "wording"):  # the lookup's columns, not the unit's
            data.pop(own, None)
        data["wordings"] = [
            {"version_date": r["version_date"], "version_until": r["version_until"],
             "version_norma": r["version_norma"], "norma_url": norma_url(r["version_norma"]), "url": r["url"]}
            for r in rows
        ]  # fmt: skip
        data["status"] = "derogado" if data.pop("repealed") else "vigente"
        data["short_name"] = short_name(boe_id)
        data["citation"] = cite(data)
        return data

    @index_errors
    def unit(self, law: str, unit: str) -> tuple[str, str]:
        """(BOE id, unit id) of what a lawyer types: a law by its BOE id, short name or number ("ET", "LAU",
        "Ley 39/2015"), a unit as "56", "art. 56 bis", "artículo 56", "a56", "disposición adicional primera" or
        "DA 1ª". An article that lies in a unit covering a range ("Artículos 127 a 130") gives that unit. What
        is not recognised comes back as given (a lookup then finds nothing)."""
        boe_id = law_id(law, self._titles()) or law
        article_id = unit_id(unit) or unit
        if not self._reader.has_unit(boe_id, article_id) and article_id.startswith("a"):
            ranges = self._reader.range_units(boe_id)
            article_id = next((r for r in ranges if range_holds(r, article_id)), article_id)
        return boe_id, article_id

    @index_errors
    def diff(self, boe_id: str, article_id: str, date_from: str, date_to: str) -> dict:
        """The word-level diff between the wordings of one unit in force on `date_from` and on `date_to`: both
        texts with their dates, links and modifying norms, and the spans (equal, delete, insert, replace).
        `QueryError` when the law or unit is not in the index, the index holds no earlier wordings, or the unit
        was not in force on a date."""
        check_date(date_from)
        check_date(date_to)
        boe_id, article_id = self.unit(boe_id, article_id)
        if self.law(boe_id) is None:
            raise QueryError(f"law {boe_id} is not in this index; `legalsearch info` lists what it holds")
        wordings = self._reader.wordings(boe_id, article_id)
        if not wordings:
            raise QueryError(f"{boe_id} has no unit {article_id!r}")
        if not self.has_history:
            raise QueryError(
                f"{self.path} holds only the wording in force of each unit; index the law's BOE API XML with "
                "`legalsearch index SOURCE --history` to compare wordings"
            )
        self._check_earlier_wordings(boe_id, article_id, wordings, min(date_from, date_to))
        old, new = (self.article(boe_id, article_id, as_of=day) for day in (date_from, date_to))
        for day, found in ((date_from, old), (date_to, new)):
            if found is None:
                first = min((w["version_date"] for w in wordings if w["version_date"]), default="?")
                raise QueryError(
                    f"{boe_id} {article_id} was not in force on {day} (its first wording is from {first}; the "
                    "last may have expired); pick dates when it was"
                )
        spans = word_diff(old["text"], new["text"])
        return {
            "boe_id": boe_id, "article_id": article_id, "heading": new["heading"], "law_title": new["law_title"],
            "short_name": short_name(boe_id),
            "from": {"date": date_from, **_wording(old).to_dict(), "heading": old["heading"]},
            "to": {"date": date_to, **_wording(new).to_dict(), "heading": new["heading"]},
            "changed": any(span.op != "equal" for span in spans),
            "spans": [asdict(span) for span in spans],
        }  # fmt: skip

    def _check_earlier_wordings(self, boe_id: str, article_id: str, wordings: list[dict], earliest: str) -> None:
        """`NoEarlierWordings` when the index holds no earlier wording of `boe_id` (indexed without --history, or
        from a source that has none) and `earliest` is before the one wording it holds, or that wording is undated:
        the index cannot say what the unit read then."""
        first = min((w["version_date"] for w in wordings if w["version_date"]), default=None)
        if self._reader.has_earlier_wordings(boe_id) or (first is not None and earliest >= first):
            return
        since = f"; the wording it holds of {article_id} is in force from {first}" if first else ""
        raise NoEarlierWordings(
            f"the index holds no earlier wordings of {boe_id}{since}: index the law's BOE API XML with "
            f"`legalsearch index {boe_id} --history` to compare wordings"
        )

    @index_errors
    def syncs(self, since: str | None = None) -> list[dict]:
        """The `legalsearch sync` runs this index remembers from `since` (YYYY-MM-DD) on, oldest first: when, the
        listing, which norms were new, changed, derogated, removed (gone, 404), failed, and indexed from the daily
        BOE — what changed in Spanish law, norm by norm, as the catalogue said."""
        if since is not None:
            check_date(since)
        keep = ("listing", "new", "changed", "derogated", "removed", "gone", "missing", "failed", "diario", "commit")
        runs = []
        for at, report in self._reader.syncs():
            if report.get("dry_run") or (since is not None and at[:10] < since):
                continue
            runs.append({"at": at, **{key: report.get(key) for key in keep}})
        return runs

    @index_errors
    def changes(self, since: str, until: str | None = None, laws: tuple[str, ...] = ()) -> list[dict]:
        """The units that got a new wording from `since` on (until `until`, inclusive), grouped by law, the law
        changed most recently first: each with its date, the norm that gave the wording and links. Read from
        the wordings' dates; a law's own first wording is no change."""
        check_date(since)
        if until is not None:
            check_date(until)
        grouped: dict[str, dict] = {}
        for row in self._reader.changes(since, until, laws):
            law = grouped.setdefault(
                row["boe_id"],
                {"boe_id": row["boe_id"], "title": row["title"], "short_name": short_name(row["boe_id"]),
                 "url": law_url(row["boe_id"]), "changes": []},
            )  # fmt: skip
            law["changes"].append(
                {"article_id": row["article_id"], "heading": row["heading"], "version_date": row["version_date"],
                 "version_until": row["version_until"], "version_norma": row["version_norma"],
                 "norma_url": norma_url(row["version_norma"]), "url": row["url"], "in_force": row["wording"] == ""}
            )  # fmt: skip
        return list(grouped.values())


def _wording(row: dict) -> Wording:
    return Wording(row["version_date"], row["version_until"], row["version_norma"], row["url"], row["text"])


def check_date(day: str) -> None:
    try:
        check_day(day, "as_of")
    except UsageError as exc:
        raise QueryError(str(exc)) from None


def in_force(since: str | None, until: str | None, day: str) -> bool:
    """Whether a wording in force from `since` until `until` (ISO dates; None: open) was in force on `day`."""
    return (since is None or since <= day) and (until is None or day < until)
