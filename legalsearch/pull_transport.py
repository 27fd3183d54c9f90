"""Downloads for `legalsearch pull`: which URLs may be read, and files fetched whole, resumed and checked.

Schemes: https; http only to this machine (127.0.0.1, localhost, ::1) unless `insecure`; file (a folder on disk or a
mount). Redirects are followed to any host (hubs redirect to CDNs): every byte is checked against the signed
manifest anyway; a redirect must still land on an allowed scheme. A dropped connection, a stalled or truncated
answer, HTTP 429 and 5xx are retried with backoff, each retry resuming where the file stopped (HTTP Range); a
file is written as `<name>.part` and renamed to its name only when its size and sha256 are the manifest's.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import LegalSearchError, UsageError

LOOPBACK_NAMES = ("localhost",)
RETRIED_STATUSES = (408, 425, 429, 500, 502, 503, 504)
MISSING_STATUSES = (404, 410)
MAX_WAIT = 60.0  # seconds: the longest backoff or Retry-After honoured between two tries


class TransferError(LegalSearchError):
    """A file of a release could not be downloaded (the network, the server)."""


class Missing(TransferError):
    """The server has no such file (HTTP 404/410, or no such file on disk)."""


class Tampered(LegalSearchError):
    """A downloaded file is not the one the signed manifest describes (its size or sha256 differs)."""


class _Retry(Exception):
    """One try failed in a way worth another (`wait`: what the server asked, if it did)."""

    def __init__(self, why: str, wait: float | None = None) -> None:
        super().__init__(why)
        self.wait = wait


def is_loopback(host: str) -> bool:
    host = (host or "").strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def as_url(location: str) -> str:
    """`location` as a URL: a path on disk (no scheme) becomes a file: URL."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme and len(parts.scheme) > 1:  # "C:" is a drive, not a scheme
        return location
    return Path(location).expanduser().resolve().as_uri()


def check_url(url: str, insecure: bool = False, redirected_from: str | None = None) -> str:
    """`url` if legalsearch may read it; otherwise one line saying why and what to do."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    where = f"{redirected_from}: redirected to {url}" if redirected_from else url
    if scheme in ("https", "file"):
        return url
    if scheme == "http":
        if is_loopback(parts.hostname or "") or insecure:
            return url
        raise UsageError(
            f"{where}: plain http is read only from this machine (127.0.0.1, localhost); use https, or --insecure on "
            "a network you trust (every file is still checked against the signed manifest)"
        )
    raise UsageError(f"{where}: scheme {scheme or '(none)'!r} is not allowed; use https, file, or http on this machine")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects to any host, on an allowed scheme only; the Range header travels with them."""

    def __init__(self, insecure: bool) -> None:
        self.insecure = insecure

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urljoin(req.full_url, newurl)
        check_url(target, self.insecure, redirected_from=req.full_url)
        return super().redirect_request(req, fp, code, msg, headers, target)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


@dataclass
class Transport:
    """How files are read: timeouts, tries and backoff (tests make them small), the scheme policy."""

    insecure: bool = False
    timeout: float = 30.0  # seconds a read may stall before the try counts as failed
    attempts: int = 6  # tries in a row without a byte of progress before giving up
    backoff: float = 1.0  # seconds before the first retry, doubling
    block: int = 1 << 20
    sleep: Callable[[float], None] = time.sleep
    requests: int = 0
    retries: int = 0

    def __post_init__(self) -> None:
        self._opener = urllib.request.build_opener(_CheckedRedirects(self.insecure))

    # --- small files: the manifest, its signature ---------------------------------------------------------

    def read(self, url: str, limit: int = 64 << 20) -> bytes:
        """The whole body at `url` (at most `limit` bytes), retried like any download."""
        check_url(url, self.insecure)
        failures = 0
        while True:
            try:
                with self._open(url, 0) as (stream, _start, length):
                    if length is not None and length > limit:
                        raise TransferError(f"{url}: {length:,} bytes, more than the {limit:,} a manifest may hold")
                    body = stream.read(limit + 1)
                    if len(body) > limit:
                        raise TransferError(f"{url}: more than the {limit:,} bytes a manifest may hold")
                    if length is not None and len(body) < length:
                        raise _Retry(f"the answer stopped after {len(body):,} of {length:,} bytes")
                    return body
            except _Retry as retry:
                failures += 1
                self._wait_or_give_up(url, retry, failures)

    # --- release files: resumed, checked -------------------------------------------------------------------

    def fetch(self, url: str, dest: Path, size: int, sha256: str, tick: Callable[[int], None] | None = None) -> None:
        """Download `url` to `dest`, checked: `size` bytes whose sha256 is `sha256`. A `dest` already there was
        checked when it was written (it is renamed from `<dest>.part` only then) and is kept; a `.part` left by
        an interrupted run is continued from where it stopped. A file that is not the manifest's is removed and
        refused (`Tampered`); a resumed one is fetched once more from its start first, in case the earlier part
        was the damaged one."""
        if dest.is_file() and dest.stat().st_size == size:
            if tick:
                tick(size)
            return
        check_url(url, self.insecure)
        part = dest.with_name(dest.name + ".part")
        resumed = part.is_file() and part.stat().st_size > 0
        digest = self._download(url, part, size, tick)
        if digest != sha256 and resumed:
            part.unlink()
            digest = self._download(url, part, size, tick)
        if digest != sha256:
            part.unlink(missing_ok=True)
            raise Tampered(
                f"{url}: its sha256 ({digest[:16]}…) is not the one the signed manifest gives ({sha256[:16]}…): the "
                "file was changed after it was signed, or damaged on the way; nothing was changed"
            )
        os.replace(part, dest)

    def _download(self, url: str, part: Path, size: int, tick) -> str:
        """Bring `part` to `size` bytes from `url`, resuming; its sha256."""
        held = _Held()
        try:
            if part.is_file():
                if part.stat().st_size > size:
                    part.unlink()
                else:
                    held.bytes = _hash_into(held.hasher, part)
                    if tick and held.bytes:
                        tick(held.bytes)
            failures = 0
            while held.bytes < size:
                before = held.bytes
                try:
                    self._continue(url, part, held, size, tick)
                except _Retry as retry:
                    failures = 0 if held.bytes > before else failures + 1
                    self._wait_or_give_up(url, retry, max(failures, 1))
            if held.bytes == 0:
                part.touch()
            return held.hexdigest()
        finally:
            held.close()

    def _continue(self, url: str, part: Path, held: _Held, size: int, tick) -> None:
        """One try: append to `part` from the bytes `held`, which follow what is written; `_Retry` when cut
        short."""
        from . import store  # the kill -9 tests' hook

        with self._open(url, held.bytes) as (stream, start, length):
            if start != held.bytes:  # the server ignored the range: start again from byte 0
                if tick:
                    tick(start - held.bytes)  # progress goes back by what is fetched again
                held.restart()
            expected = size - held.bytes
            if length is not None and length != expected:
                raise Tampered(
                    f"{url}: the server sends {start + length:,} bytes, the signed manifest says {size:,}; "
                    "nothing was changed"
                )
            with open(part, "r+b" if held.bytes else "wb") as out:
                out.seek(held.bytes)
                out.truncate()
                try:
                    while held.bytes < size:
                        block = stream.read(min(self.block, size - held.bytes))
                        if not block:
                            break
                        out.write(block)
                        held.add(block)
                        if tick:
                            tick(len(block))
                        if held.bytes < size:
                            out.flush()
                            store.pause("pull-downloading")
                    if held.bytes == size and stream.read(1):
                        raise Tampered(f"{url}: longer than the {size:,} bytes the signed manifest says")
                except (OSError, http.client.HTTPException) as exc:
                    if isinstance(exc, OSError) and not _network(exc):
                        raise
                    out.flush()
                    os.fsync(out.fileno())
                    raise _Retry(_why(exc)) from None
                out.flush()
                os.fsync(out.fileno())
        if held.bytes < size:
            raise _Retry(f"the answer stopped after {held.bytes:,} of {size:,} bytes")

    @contextlib.contextmanager
    def _open(self, url: str, offset: int):
        """(stream, first byte it holds, bytes it will send or None) for `url` from byte `offset`."""
        self.requests += 1
        if urllib.parse.urlsplit(url).scheme.lower() == "file":
            path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
            try:
                handle = open(path, "rb")  # noqa: SIM115 (closed below)
            except FileNotFoundError:
                raise Missing(f"{url}: no such file") from None
            except OSError as exc:
                raise TransferError(f"{url}: cannot be read ({exc.strerror})") from None
            with handle:
                total = os.fstat(handle.fileno()).st_size
                handle.seek(min(offset, total))
                yield handle, min(offset, total), total - min(offset, total)
            return
        headers = {"User-Agent": f"legalsearch/{__version__}", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                raise _Retry("the server refused the range asked") from None
            if exc.code in MISSING_STATUSES:
                raise Missing(f"{url}: the server answered HTTP {exc.code} (no such file)") from None
            if exc.code in RETRIED_STATUSES:
                raise _Retry(f"HTTP {exc.code} {exc.reason}", _retry_after(exc.headers.get("Retry-After"))) from None
            raise TransferError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, UsageError):
                raise exc.reason from None
            raise _Retry(_why(exc.reason if isinstance(exc.reason, BaseException) else exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retry(_why(exc)) from None
        with response:
            start, length = _span(response, offset)
            yield response, start, length

    def _wait_or_give_up(self, url: str, retry: _Retry, failures: int) -> None:
        if failures >= self.attempts:
            raise TransferError(
                f"{url}: {retry} ({failures} tries in a row); check the network or the server and run pull again: "
                "it continues where it stopped"
            )
        wait = min(MAX_WAIT, self.backoff * 2 ** (failures - 1))
        if retry.wait is not None:
            wait = min(MAX_WAIT, max(wait, retry.wait))
        self.retries += 1
        self.sleep(wait)


class _Held:
    """What a download holds so far: its bytes on disk and their running sha256, computed in a thread of its own
    while the next block is read (hashlib releases the GIL), at most `BACKLOG` blocks behind."""

    BACKLOG = 8

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="legalsearch-sha256")
        self._pending: deque = deque()
        self.restart()

    def restart(self) -> None:
        self._drain()
        self.bytes = 0
        self.hasher = hashlib.sha256()

    def add(self, block: bytes) -> None:
        self.bytes += len(block)
        self._pending.append(self._pool.submit(self.hasher.update, block))
        while len(self._pending) > self.BACKLOG:
            self._pending.popleft().result()

    def hexdigest(self) -> str:
        self._drain()
        return self.hasher.hexdigest()

    def close(self) -> None:
        self._drain()
        self._pool.shutdown()

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()


def _span(response, offset: int) -> tuple[int, int | None]:
    """(first byte, bytes to come) of an HTTP answer to a request from byte `offset`."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        try:
            first = int(content_range.split()[1].split("-")[0])
        except (IndexError, ValueError):
            raise _Retry(f"a partial answer without a readable Content-Range ({content_range!r})") from None
        if first != offset:
            raise _Retry(f"asked for bytes from {offset:,}, the server sent them from {first:,}")
        return first, length
    return 0, length


def _hash_into(hasher, path: Path) -> int:
    have = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            hasher.update(block)
            have += len(block)
    return have


def _network(exc: OSError) -> bool:
    """Whether an OSError met while reading an answer came from the network (not the disk being written)."""
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    return getattr(exc, "filename", None) is None and exc.errno not in (28, 30, 122)  # ENOSPC, EROFS, EDQUOT


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the server stopped sending (timed out)"
    if isinstance(exc, http.client.IncompleteRead):
        return "the answer was cut short"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused (is the server up?)"
    if isinstance(exc, ConnectionError):
        return "the connection dropped"
    return str(exc) or type(exc).__name__
