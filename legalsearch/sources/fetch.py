"""Client for the BOE open-data API, with an on-disk cache.

`GET {api}/legislacion-consolidada/id/<boe_id>` answers metadata, analysis and text (XML); when the text is
missing there, it comes from `…/id/<boe_id>/texto`. The two are merged into one `<response>` saved as
`<cache>/<boe_id>.xml`, written to a temporary file and renamed, so an interrupted download never leaves a
partial file. `catalogue_page`, `sumario` and `diario` serve `legalsearch sync` (sync.py).

Polite: one request at a time, `delay` seconds apart (`--rate`), an identifying User-Agent and an explicit
`Accept`; retries with exponential backoff on 5xx, 429, timeouts and dropped connections, never on other 4xx.
The API root comes from `LEGALSEARCH_BOE_API` (default `https://www.boe.es/datosabiertos/api`; a value ending in
`/legislacion-consolidada`, its earlier meaning, still works).
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import FetchError
from ..files import write_atomic
from . import BOE_ID_ARG

DEFAULT_API = "https://www.boe.es/datosabiertos/api"
DEFAULT_CACHE = Path("corpora") / "cache"
USER_AGENT = f"legalsearch/{__version__} (+https://github.com/legalsearch; consolidated Spanish legislation mirror)"


def api_root(value: str | None = None) -> str:
    """The API root from `value`, else LEGALSEARCH_BOE_API, else the BOE's; `…/legislacion-consolidada` is cut."""
    root = (value or os.environ.get("LEGALSEARCH_BOE_API") or DEFAULT_API).rstrip("/")
    return root.removesuffix("/legislacion-consolidada")


class NotFound(FetchError):
    """The API answered 404: no such norm (or not consolidated), no BOE that day."""


def default_cache() -> Path:
    return Path(os.environ.get("LEGALSEARCH_CACHE", DEFAULT_CACHE))


@dataclass
class BOEClient:
    """Downloads laws politely: one request at a time, `delay` seconds apart, `retries` tries with backoff."""

    cache: Path = field(default_factory=default_cache)
    base_url: str | None = None  # the API root (or, as before, its …/legislacion-consolidada)
    delay: float = 1.0
    retries: int = 3
    backoff: float = 2.0
    timeout: float = 60.0
    _last_request: float = 0.0
    _unreachable: str | None = None  # set when the API could not be reached: later ids fail at once
    requests: int = 0  # made so far (retries included)
    answered: int = 0  # requests the API answered (any status)

    def __post_init__(self) -> None:
        self.api = api_root(self.base_url)
        self.base_url = f"{self.api}/legislacion-consolidada"

    @property
    def site(self) -> str:
        """Scheme and host of the API (the diario documents are served beside it)."""
        parts = urllib.parse.urlsplit(self.api)
        return f"{parts.scheme}://{parts.netloc}"

    def catalogue_page(self, offset: int, limit: int, since: str | None = None, until: str | None = None) -> list:
        """One page of the consolidated catalogue (JSON items), ordered by id so that pages do not shift."""
        params = {"offset": offset, "limit": limit, "query": json.dumps({"sort": [{"identificador": "asc"}]})}
        if since:
            params["from"] = since
        if until:
            params["to"] = until
        body = self._request(f"{self.base_url}?{urllib.parse.urlencode(params)}", "catalogue", "application/json")
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise FetchError(f"catalogue: the BOE API answered with invalid JSON ({exc}); try again") from None
        data = answer.get("data") if isinstance(answer, dict) else None
        if data in ("", None, {}):
            return []
        if not isinstance(data, list):
            raise FetchError("catalogue: the BOE API answered an unexpected shape (no list of items)")
        return data

    def sumario(self, day: str) -> dict | None:
        """The daily BOE sumario of `day` (YYYYMMDD) as JSON, or None when no BOE was published that day."""
        try:
            body = self._request(f"{self.api}/boe/sumario/{day}", f"sumario {day}", "application/json")
        except NotFound:
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise FetchError(f"sumario {day}: invalid JSON ({exc}); try again") from None

    def diario(self, boe_id: str) -> Path:
        """The diario document (the text as published) of `boe_id`, cached as `<cache>/diario/<boe_id>.xml`."""
        path = self.cache / "diario" / f"{boe_id}.xml"
        if path.exists():
            return path
        body = self._request(f"{self.site}/diario_boe/xml.php?id={boe_id}", boe_id)
        if b"<documento" not in body[:2000]:
            raise FetchError(f"{boe_id}: the BOE has no diario document with this id")
        write_atomic(path, body)
        return path

    def path_for(self, boe_id: str) -> Path:
        return self.cache / f"{boe_id}.xml"

    def get(self, boe_id: str, refresh: bool = False) -> Path:
        """The cached XML of `boe_id`, downloading it first when it is not cached (or `refresh`)."""
        if not BOE_ID_ARG.match(boe_id):
            raise FetchError(f"{boe_id}: not a BOE id (expected e.g. BOE-A-1978-31229)")
        path = self.path_for(boe_id)
        if path.exists() and not refresh:
            return path
        write_atomic(path, self._download_law(boe_id))
        return path

    __call__ = get

    def _download_law(self, boe_id: str) -> bytes:
        full = self._request(f"{self.base_url}/id/{boe_id}", boe_id)
        root = self._parse(full, boe_id, "/id")
        data = root.find("data")
        if data is None:
            raise FetchError(f"{boe_id}: the BOE API answered without <data>; try again later")
        if data.find("texto") is None:
            texto_root = self._parse(self._request(f"{self.base_url}/id/{boe_id}/texto", boe_id), boe_id, "/texto")
            texto = texto_root.find("data/texto")
            if texto is None:
                raise FetchError(f"{boe_id}: the BOE API has no consolidated text for this law")
            data.append(texto)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)

    @staticmethod
    def _parse(document: bytes, boe_id: str, what: str) -> ET.Element:
        try:
            root = ET.fromstring(document)
        except ET.ParseError as exc:
            raise FetchError(f"{boe_id}: the BOE API's {what} answer is not valid XML ({exc}); try again") from None
        code = root.findtext("status/code")
        if code and code.strip() != "200":
            text = (root.findtext("status/text") or "").strip()
            raise FetchError(f"{boe_id}: the BOE API answered {code.strip()} {text}".rstrip())
        return root

    def _request(self, url: str, boe_id: str, accept: str = "application/xml") -> bytes:
        request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": USER_AGENT})
        if self._unreachable is not None:
            raise FetchError(f"{boe_id}: not tried, the BOE API was unreachable just before ({self._unreachable})")
        last_error = ""
        for attempt in range(self.retries):
            wait = self.delay - (time.monotonic() - self._last_request)
            if wait > 0:
                time.sleep(wait)
            try:
                self._last_request = time.monotonic()
                self.requests += 1
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body = response.read()
                self.answered += 1
                return body
            except urllib.error.HTTPError as exc:
                self.answered += 1
                if exc.code == 404:
                    raise NotFound(f"{boe_id}: not at the BOE (404: no such consolidated norm, or no BOE)") from None
                if exc.code < 500 and exc.code != 429:
                    raise FetchError(f"{boe_id}: the BOE API refused the request (HTTP {exc.code})") from None
                last_error = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                last_error = str(getattr(exc, "reason", exc))
            if attempt + 1 < self.retries:
                time.sleep(self.backoff * 2**attempt)
        if not self.answered:  # never reached: later ids fail at once; one norm that keeps failing fails alone
            self._unreachable = last_error
        raise FetchError(
            f"{boe_id}: cannot reach the BOE API at {self.base_url} after {self.retries} tries ({last_error}); "
            "check the network, or pass local files instead of BOE ids"
        )
