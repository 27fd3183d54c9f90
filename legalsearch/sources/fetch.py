"""Client for the BOE open-data API of consolidated legislation, with an on-disk cache.

`GET {base}/id/<boe_id>` answers metadata, analysis and text (XML); when the text is missing there, it comes from
`{base}/id/<boe_id>/texto`. The two are merged into one `<response>` saved as `<cache>/<boe_id>.xml`, written to a
temporary file and renamed, so an interrupted download never leaves a partial file.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import FetchError
from . import BOE_ID_ARG

DEFAULT_BASE_URL = "https://www.boe.es/datosabiertos/api/legislacion-consolidada"
DEFAULT_CACHE = Path("corpora") / "cache"


def default_cache() -> Path:
    return Path(os.environ.get("LEGALSEARCH_CACHE", DEFAULT_CACHE))


@dataclass
class BOEClient:
    """Downloads laws politely: one request at a time, `delay` seconds apart, `retries` tries with backoff."""

    cache: Path = field(default_factory=default_cache)
    base_url: str = field(default_factory=lambda: os.environ.get("LEGALSEARCH_BOE_API", DEFAULT_BASE_URL))
    delay: float = 1.0
    retries: int = 3
    backoff: float = 2.0
    timeout: float = 60.0
    _last_request: float = 0.0
    _unreachable: str | None = None  # set when the API could not be reached: later ids fail at once

    def path_for(self, boe_id: str) -> Path:
        return self.cache / f"{boe_id}.xml"

    def get(self, boe_id: str, refresh: bool = False) -> Path:
        """The cached XML of `boe_id`, downloading it first when it is not cached (or `refresh`)."""
        if not BOE_ID_ARG.match(boe_id):
            raise FetchError(f"{boe_id}: not a BOE id (expected e.g. BOE-A-1978-31229)")
        path = self.path_for(boe_id)
        if path.exists() and not refresh:
            return path
        document = self._download_law(boe_id)
        self.cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".xml.part-{os.getpid()}")
        try:
            partial.write_bytes(document)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
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

    def _request(self, url: str, boe_id: str) -> bytes:
        request = urllib.request.Request(
            url, headers={"Accept": "application/xml", "User-Agent": f"legalsearch/{__version__}"}
        )
        if self._unreachable is not None:
            raise FetchError(f"{boe_id}: not tried, the BOE API was unreachable just before ({self._unreachable})")
        last_error = ""
        for attempt in range(self.retries):
            wait = self.delay - (time.monotonic() - self._last_request)
            if wait > 0:
                time.sleep(wait)
            try:
                self._last_request = time.monotonic()
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise FetchError(f"{boe_id}: no consolidated law with this id at the BOE (404)") from None
                if exc.code < 500 and exc.code != 429:
                    raise FetchError(f"{boe_id}: the BOE API refused the request (HTTP {exc.code})") from None
                last_error = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last_error = str(getattr(exc, "reason", exc))
            if attempt + 1 < self.retries:
                time.sleep(self.backoff * 2**attempt)
        self._unreachable = last_error
        raise FetchError(
            f"{boe_id}: cannot reach the BOE API at {self.base_url} after {self.retries} tries ({last_error}); "
            "check the network, or pass local files instead of BOE ids"
        )
