"""A local HTTP server for the pull tests: serves a folder on 127.0.0.1 with HTTP Range, and injects the faults a
download must survive (a dropped connection, a stalled answer, a truncated body, an ignored range, 5xx, redirects).
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

FAULTS = ("drop", "slow", "truncate", "ignore-range", "503", "404")


class FolderHandler(http.server.BaseHTTPRequestHandler):
    """GET of a file under `root`, with `Range: bytes=N-`. `faults[path]` is a list of faults the next requests of
    that path meet, one each; `redirects[path]` sends them elsewhere; `hits` records (path, Range header)."""

    protocol_version = "HTTP/1.1"
    root: ClassVar[Path]
    faults: ClassVar[dict[str, list[str]]]
    redirects: ClassVar[dict[str, str]]
    hits: ClassVar[list[tuple[str, str | None]]]
    stall: ClassVar[float] = 2.0

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.hits.append((path, self.headers.get("Range")))
        if path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        queue = self.faults.get(path) or []
        fault = queue.pop(0) if queue else None
        if fault in ("503", "404"):
            return self._status(int(fault))
        if fault == "drop":  # the connection closes before any answer
            self.close_connection = True
            return
        file = (self.root / path.lstrip("/")).resolve()
        if self.root.resolve() not in file.parents or not file.is_file():
            return self._status(404)
        body = file.read_bytes()
        start = 0
        wanted = self.headers.get("Range")
        if wanted and fault != "ignore-range" and wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[6:-1])
            if start >= len(body) and body:
                return self._status(416)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        part = body[start:]
        if fault == "truncate":  # half the body, then the connection closes
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if fault == "slow":  # a quarter, then silence past the client's timeout
            self.wfile.write(part[: len(part) // 4])
            self.wfile.flush()
            time.sleep(self.stall)
            self.close_connection = True
            return
        self.wfile.write(part)

    def _status(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, type[FolderHandler]]]:
    """(base URL, handler class) of a server of `root` on 127.0.0.1, stopped on exit."""
    handler = type("Handler", (FolderHandler,), {"root": Path(root), "faults": {}, "redirects": {}, "hits": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
