"""Client for the BOE open-data API, with an on-disk cache.

`GET {api}/legislacion-consolidada/id/<boe_id>` answers metadata, analysis and text (XML); when the text is
missing there, it comes from `…/id/<boe_id>/texto`. The two are merged into one `<response>` saved as
`<cache>/<boe_id>.xml`, written to a temporary file and renamed, so an interrupted download never leaves a
partial file. `catalogue_page`, `sumario` and `diario` serve `legalsearch sync` (sync.py).

Polite: one request at a time, `delay` seconds apart (`--rate`), an identifying User-Agent and an explicit
`Accept`; retries with exponential backoff on 5xx, 429, timeouts and dropped connections, never on other 4xx. A
`Retry-After` (seconds or an HTTP-date) is honoured up to `MAX_WAIT` seconds, and after a 429 every later request
waits twice as long (up to `MAX_DELAY`). What the server said (HTTP 503, 429) is reported as such; "cannot reach"
only when it never answered.

Safe: the API root must be https (http only on this machine's loopback, for stand-ins); redirects are followed
only on the API's own host (or `redirect_hosts`); no answer is read beyond `max_bytes` (64 MiB).
The API root comes from `LEGALSEARCH_BOE_API` (default `https://www.boe.es/datosabiertos/api`; a value ending in
`/legislacion-consolidada`, its earlier meaning, still works).
"""

from __future__ import annotations

import datetime
import email.utils
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
from ..errors import FetchError, UsageError
from ..files import write_atomic
from . import BOE_ID_ARG

DEFAULT_API = "https://www.boe.es/datosabiertos/api"
DEFAULT_CACHE = Path("corpora") / "cache"
USER_AGENT = f"legalsearch/{__version__} (+https://github.com/legalsearch; consolidated Spanish legislation mirror)"
MAX_BYTES = 64 * 2**20  # the largest answer read (a 10,000-item catalogue page is ~10 MB, the largest law a few)
MAX_WAIT = 300.0  # the longest Retry-After honoured; a server asking for more fails the request
MAX_DELAY = 60.0  # the slowest pace a run of 429s brings the client down to
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def api_root(value: str | None = None) -> str:
    """The API root from `value`, else LEGALSEARCH_BOE_API, else the BOE's; `…/legislacion-consolidada` is cut."""
    root = (value or os.environ.get("LEGALSEARCH_BOE_API") or DEFAULT_API).rstrip("/")
    return root.removesuffix("/legislacion-consolidada")


class NotFound(FetchError):
    """The API answered 404: no such norm (or not consolidated), no BOE that day."""


def check_api(root: str) -> None:
    """Refuse an API root that is not https (http only on the loopback interface, for a local stand-in)."""
    parts = urllib.parse.urlsplit(root)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return
    raise UsageError(
        f"--api {root}: the BOE API root must be an https:// URL (http:// only for 127.0.0.1 or localhost)"
    )


def retry_after(value: str | None, now: datetime.datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (a number of seconds or an HTTP-date); None when absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    now = now or datetime.datetime.now(datetime.UTC)
    return max(0.0, (when - now).total_seconds())


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the API's own scheme and host (or one of `allowed`)."""

    def __init__(self, api: str, allowed: tuple[str, ...]) -> None:
        parts = urllib.parse.urlsplit(api)
        self.scheme, self.hosts = parts.scheme, {parts.netloc, *allowed}

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl))
        if target.scheme != self.scheme or target.netloc not in self.hosts:
            raise FetchError(
                f"the BOE API redirected {req.full_url} to {target.scheme}://{target.netloc}, another host: not "
                "followed (set redirect_hosts to allow it)"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


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
    max_bytes: int = MAX_BYTES
    redirect_hosts: tuple[str, ...] = ()  # other hosts (host[:port]) a redirect may lead to
    _last_request: float = 0.0
    _unreachable: str | None = None  # set when the API could not be reached: later ids fail at once
    requests: int = 0  # made so far (retries included)
    answered: int = 0  # requests the API answered (any status)
    throttled: int = 0  # answers 429 (too many requests)
    waited: float = 0.0  # seconds slept on the server's Retry-After

    def __post_init__(self) -> None:
        self.api = api_root(self.base_url)
        self.base_url = f"{self.api}/legislacion-consolidada"
        self._opener = None

    def check(self) -> None:
        """Raise `UsageError` when the API root is not one this client may talk to (see `check_api`)."""
        check_api(self.api)

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
        return catalogue_items(body, f"catalogue page at offset {offset}")

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

    def exists(self, boe_id: str) -> bool:
        """Whether the API still has `boe_id` (its metadatos answer 200; 404: it has not). Other failures raise."""
        try:
            body = self._request(f"{self.base_url}/id/{boe_id}/metadatos", boe_id)
        except NotFound:
            return False
        self._parse(body, boe_id, "/metadatos")
        return True

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
        if not "".join(data.find("texto").itertext()).strip():
            raise FetchError(f"{boe_id}: the BOE API answered an empty text (<texto/>); not indexed, asked again later")
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
        """GET `url` politely (see the module's docstring); the body, or FetchError (NotFound on a 404)."""
        check_api(self.api)
        request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": USER_AGENT})
        if self._unreachable is not None:
            raise FetchError(f"{boe_id}: not tried, the BOE API was unreachable just before ({self._unreachable})")
        last_error, answered = "", False
        for attempt in range(self.retries):
            wait = self.delay - (time.monotonic() - self._last_request)
            if wait > 0:
                time.sleep(wait)
            pause = self.backoff * 2**attempt
            try:
                self._last_request = time.monotonic()
                self.requests += 1
                return self._read(request, boe_id)
            except urllib.error.HTTPError as exc:
                self.answered += 1
                answered = True
                if exc.code == 404:
                    raise NotFound(f"{boe_id}: not at the BOE (404: no such consolidated norm, or no BOE)") from None
                if exc.code < 500 and exc.code != 429:
                    raise FetchError(f"{boe_id}: the BOE API refused the request (HTTP {exc.code})") from None
                last_error = f"HTTP {exc.code} {exc.reason}".rstrip()
                asked = retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                if exc.code == 429:
                    self.throttled += 1
                    self.delay = min(max(self.delay * 2, 1.0), MAX_DELAY)  # slower for the rest of the run
                if asked is not None and asked > MAX_WAIT:
                    raise FetchError(
                        f"{boe_id}: the BOE API answered {last_error} and asked to wait {asked:,.0f} s "
                        f"(more than {MAX_WAIT:.0f}); try again later"
                    ) from None
                if asked is not None:
                    last_error += f", Retry-After {asked:.0f} s"
                    pause = max(pause, asked)
                    self.waited += asked
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                last_error = str(getattr(exc, "reason", exc))
            if attempt + 1 < self.retries:
                time.sleep(pause)
        if answered:  # the server is there and said no: say what it said
            raise FetchError(
                f"{boe_id}: the BOE API answered {last_error} {self.retries} times (down or overloaded); try again "
                "later"
            )
        if not self.answered:  # never reached: later ids fail at once; one norm that keeps failing fails alone
            self._unreachable = last_error
        raise FetchError(
            f"{boe_id}: cannot reach the BOE API at {self.base_url} after {self.retries} tries ({last_error}); "
            "check the network, or pass local files instead of BOE ids"
        )

    def _read(self, request: urllib.request.Request, what: str) -> bytes:
        """One request; the body, read up to `max_bytes` (a larger answer is refused)."""
        if self._opener is None:
            self._opener = urllib.request.build_opener(_SameHostRedirects(self.api, tuple(self.redirect_hosts)))
        with self._opener.open(request, timeout=self.timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > self.max_bytes:
                self.answered += 1
                raise FetchError(f"{what}: the BOE API's answer ({int(length):,} bytes) is over the "
                                 f"{self.max_bytes:,} bytes read at most; refused")  # fmt: skip
            body = response.read(self.max_bytes + 1)
        self.answered += 1
        if len(body) > self.max_bytes:
            raise FetchError(f"{what}: the BOE API's answer is over the {self.max_bytes:,} bytes read at most; refused")
        return body


def catalogue_items(body: bytes, what: str = "catalogue") -> list[dict]:
    """The items of a catalogue answer, its envelope checked: `status.code` must be 200 (an error inside an HTTP
    200 raises FetchError); `"data": ""` (or `{}`, `[]`) is an empty page; one item may come as a bare object."""
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise FetchError(f"{what}: the BOE API answered with invalid JSON ({exc}); try again") from None
    status = answer.get("status") if isinstance(answer, dict) else None
    if not isinstance(status, dict):
        raise FetchError(f"{what}: the BOE API answered without a status; the listing is not used")
    code = str(status.get("code", "")).strip()
    if code != "200":
        text = str(status.get("text", "")).strip()
        raise FetchError(f"{what}: the BOE API answered status {code or '(none)'} {text}".rstrip() + " inside an "
                         "HTTP 200; the listing is not used")  # fmt: skip
    data = answer.get("data")
    if data in ("", None, {}, []):
        return []
    if isinstance(data, dict) and "identificador" in data:
        return [data]
    if not isinstance(data, list):
        raise FetchError(f"{what}: the BOE API answered an unexpected shape (no list of items); not used")
    return data
