"""Listing the BOE catalogue for `legalsearch sync` without trusting it blindly.

Pages are asked in id order and overlap by one item: each must start at or before the last id of the one before
(a page that starts past it means items left the catalogue between the requests: it is asked again from further
back). A short page is not the end; the end is a page with nothing new, asked twice on a full listing. Every
answer's envelope is checked by the client (`catalogue_items`). A listing that came out of id order, lost items
(no `identificador`) or could not be checked carries its doubts, and `sync` removes nothing on its word; such a
listing is asked a second time and the two merged, so that what one pass missed the other may have.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .sources.fetch import BOEClient

STEP_BACKS = 8  # times a page that does not meet the last one is asked again from further back (1, 2, 4 … items)


@dataclass
class Listing:
    """The catalogue as listed: items by id, and whether it may be trusted to say what is gone."""

    items: dict[str, dict] = field(default_factory=dict)
    ordered: bool = True  # every page in id order, each meeting the one before
    malformed: int = 0  # items without an identificador
    doubts: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.doubts


def list_catalogue(client: BOEClient, page: int, since: str | None, tick=None, confirm_end: bool = False) -> Listing:
    """The catalogue (updated since `since`, YYYYMMDD, when given), every answer checked (see the module's
    docstring). A listing in doubt is asked a second time and the two are merged; an id met twice keeps its
    latest update. A failed page raises FetchError."""
    listing = _list_once(client, page, since, tick, confirm_end)
    if listing.doubts:
        again = _list_once(client, page, since, tick, confirm_end)
        for boe_id, item in again.items.items():
            _keep_latest(listing.items, boe_id, item)
    return listing


def _list_once(client: BOEClient, page: int, since: str | None, tick, confirm_end: bool) -> Listing:
    listing = Listing()
    offset, last, back, confirmed, overlaps = 0, None, 1, False, False
    while True:
        batch = client.catalogue_page(offset, page, since)
        named = [(_id_of(item), item) for item in batch]
        ids = [b for b, _ in named if b is not None]
        if ids != sorted(ids) and listing.ordered:
            listing.ordered = False
            listing.doubts.append("the API did not answer in id order")
        if listing.ordered and overlaps and ids and ids[0] > last:  # a gap: items left before this page
            if back <= 2**STEP_BACKS and offset > 0:
                offset, back = max(0, offset - back), back * 2
                continue
            listing.ordered = False
            listing.doubts.append(f"pages did not meet at offset {offset}")
        listing.malformed += len(batch) - len(ids)
        new = len(set(ids) - set(listing.items))
        back = 1 if new else back
        if offset and not overlaps and new and "pages of one item" not in " ".join(listing.doubts):
            listing.doubts.append("pages of one item: their order across pages could not be checked")
        for boe_id, item in named:
            if boe_id is not None:
                _keep_latest(listing.items, boe_id, item)
        if tick:
            tick("list", len(listing.items), len(listing.items))
        if not batch or (offset and not new):  # nothing new: the end (asked twice on a full listing)
            if len(batch) > 1:
                listing.doubts.append(f"the page at offset {offset} held nothing new")
            if confirm_end and not confirmed:
                confirmed = True
                continue
            break
        confirmed = False
        last = ids[-1] if ids else last
        overlaps = len(batch) > 1  # the next page starts with this one's last item (a page of one cannot)
        offset += len(batch) - 1 if overlaps else 1
    if listing.malformed:
        listing.doubts.append(f"{listing.malformed} items without an identificador")
    return listing


def _id_of(item) -> str | None:
    boe_id = item.get("identificador") if isinstance(item, dict) else None
    return boe_id.strip() if isinstance(boe_id, str) and boe_id.strip() else None


def _keep_latest(items: dict[str, dict], boe_id: str, item: dict) -> None:
    known = items.get(boe_id)
    if known is None or str(item.get("fecha_actualizacion", "")) > str(known.get("fecha_actualizacion", "")):
        items[boe_id] = item
