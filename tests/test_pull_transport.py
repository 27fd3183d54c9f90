"""Downloads of `legalsearch pull` (legalsearch/pull_transport.py) against a local server that drops, stalls,
truncates and redirects: every file arrives whole and checked, resumed with HTTP Range, or is refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from legalsearch.errors import UsageError
from legalsearch.pull_transport import Missing, Tampered, TransferError, Transport, as_url, check_url

from .pull_server import serve

BODY = os.urandom(300_000)
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def site(tmp_path: Path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "blob.bin").write_bytes(BODY)
    with serve(root) as (base, handler):
        yield base, handler


def quick(**options) -> Transport:
    return Transport(**{"timeout": 0.5, "backoff": 0.01, "block": 16_384, **options})


def test_a_file_arrives_whole_and_checked(site, tmp_path) -> None:
    base, _ = site
    dest = tmp_path / "out" / "blob.bin"
    dest.parent.mkdir()
    seen = []
    quick().fetch(f"{base}/blob.bin", dest, len(BODY), SHA, seen.append)
    assert dest.read_bytes() == BODY and sum(seen) == len(BODY)
    assert not dest.with_name("blob.bin.part").exists()


@pytest.mark.parametrize("fault", ["drop", "slow", "truncate", "503", "ignore-range"])
def test_faults_are_retried_and_resumed(site, tmp_path, fault) -> None:
    base, handler = site
    handler.faults["/blob.bin"] = [fault, "truncate"] if fault == "ignore-range" else [fault, fault]
    handler.stall = 1.5
    if fault == "ignore-range":
        handler.faults["/blob.bin"] = ["truncate", "ignore-range"]
    dest = tmp_path / "blob.bin"
    transport = quick()
    transport.fetch(f"{base}/blob.bin", dest, len(BODY), SHA)
    assert dest.read_bytes() == BODY
    assert transport.retries >= 1
    if fault in ("slow", "truncate"):
        assert any(r and r != "bytes=0-" for _, r in handler.hits), "the retry resumed with a Range"


def test_an_interrupted_part_is_continued_from_where_it_stopped(site, tmp_path) -> None:
    base, handler = site
    dest = tmp_path / "blob.bin"
    dest.with_name("blob.bin.part").write_bytes(BODY[:100_000])
    quick().fetch(f"{base}/blob.bin", dest, len(BODY), SHA)
    assert dest.read_bytes() == BODY
    assert handler.hits == [("/blob.bin", "bytes=100000-")]


def test_a_damaged_part_is_fetched_again_from_the_start(site, tmp_path) -> None:
    base, handler = site
    dest = tmp_path / "blob.bin"
    dest.with_name("blob.bin.part").write_bytes(b"x" * 100_000)
    quick().fetch(f"{base}/blob.bin", dest, len(BODY), SHA)
    assert dest.read_bytes() == BODY
    assert [r for _, r in handler.hits] == ["bytes=100000-", None]


def test_a_file_that_is_not_the_manifests_is_refused_and_removed(site, tmp_path) -> None:
    base, _ = site
    dest = tmp_path / "blob.bin"
    with pytest.raises(Tampered, match="sha256"):
        quick().fetch(f"{base}/blob.bin", dest, len(BODY), "0" * 64)
    with pytest.raises(Tampered, match="signed manifest says"):
        quick().fetch(f"{base}/blob.bin", dest, len(BODY) - 1, SHA)
    assert not dest.exists() and not dest.with_name("blob.bin.part").exists()


def test_a_server_that_keeps_failing_is_one_line(site, tmp_path) -> None:
    base, handler = site
    handler.faults["/blob.bin"] = ["503"] * 10
    with pytest.raises(TransferError, match=r"HTTP 503.*tries in a row.*run pull again"):
        quick(attempts=3).fetch(f"{base}/blob.bin", tmp_path / "blob.bin", len(BODY), SHA)
    with pytest.raises(Missing):
        quick().fetch(f"{base}/nothing.bin", tmp_path / "nothing.bin", 1, SHA)


def test_redirects_to_another_host_are_followed_on_allowed_schemes(site, tmp_path) -> None:
    base, handler = site
    other = base.replace("127.0.0.1", "localhost")
    handler.redirects["/hub/blob.bin"] = f"{other}/blob.bin"
    dest = tmp_path / "blob.bin"
    quick().fetch(f"{base}/hub/blob.bin", dest, len(BODY), SHA)
    assert dest.read_bytes() == BODY
    handler.redirects["/evil"] = "http://example.com/blob.bin"
    with pytest.raises(UsageError, match=r"redirected to http://example\.com"):
        quick().read(f"{base}/evil")
    handler.redirects["/ftp"] = "ftp://example.com/blob.bin"
    with pytest.raises((UsageError, TransferError)):
        quick().read(f"{base}/ftp")


def test_schemes(tmp_path) -> None:
    assert check_url("https://hub.example/releases/x")
    assert check_url("http://127.0.0.1:8000/x") and check_url("http://localhost/x") and check_url("http://[::1]/x")
    assert check_url("http://example.com/x", insecure=True)
    for bad in ("http://example.com/x", "ftp://example.com/x", "gopher://x", "data:,hola"):
        with pytest.raises(UsageError):
            check_url(bad)
    (tmp_path / "blob.bin").write_bytes(BODY)
    url = as_url(str(tmp_path))
    assert url.startswith("file://")
    dest = tmp_path / "copy.bin"
    dest.with_name("copy.bin.part").write_bytes(BODY[:5])
    quick().fetch(f"{url}/blob.bin", dest, len(BODY), SHA)
    assert dest.read_bytes() == BODY and quick().read(f"{url}/blob.bin") == BODY


def test_progress_in_a_log_says_bytes_rate_and_time_left() -> None:
    from legalsearch.pull import PlainBytes

    lines: list[str] = []
    now = [0.0]
    progress = PlainBytes(lines.append, {"download": "Downloading release"}, clock=lambda: now[0])
    total = 3 * 2**30
    for second in range(0, 31, 5):
        now[0] = float(second)
        progress("download", min(total, second * 100 * 2**20), total)
    now[0] = 40.0
    progress("download", total, total)
    assert lines, "a log gets plain lines"
    assert "Downloading release: 500.0 MB/3.0 GB (16%), 100.0 MB/s, about 26 s left" in lines[0]
    assert lines[-1].endswith("done in 40 s")
