"""Writing files so that a crash never leaves half of one: atomic writes, checksums, flushing folders; storage
that is full or read-only said in one line."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import LegalSearchError

FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class StorageError(LegalSearchError):
    """The disk is full or cannot be written: nothing was changed (what the run had begun was removed)."""


def mount_point(path: Path) -> Path:
    """The mount point of the file system that holds `path` (or would hold it)."""
    path = Path(os.path.realpath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(mount_point(path)).free


def full_disk(path: Path, needed: int) -> StorageError:
    disk = mount_point(path)
    return StorageError(
        f"{path}: the disk that holds it ({disk}) is full: {human_bytes(free_bytes(path))} free, this run needs "
        f"about {human_bytes(needed)}; nothing was changed: free some space (or index into another --index) and "
        "run again"
    )


def read_only(path: Path, where: Path, why: str) -> StorageError:
    return StorageError(
        f"{path}: read-only storage ({where} cannot be written: {why}); nothing was changed: index into a writable "
        "--index, or make it writable"
    )


def is_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the user's quota) is full: an OSError, or SQLite's SQLITE_FULL."""
    if isinstance(exc, OSError):
        return exc.errno in FULL
    if isinstance(exc, sqlite3.OperationalError):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


def is_read_only(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in READ_ONLY
    if isinstance(exc, sqlite3.OperationalError):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_READONLY or "readonly" in str(exc)
    return False


@contextlib.contextmanager
def storage_errors(path: Path, needed: Callable[[], int]) -> Iterator[None]:
    """Turn a full disk or read-only storage met while writing `path` into one `StorageError` line (`needed()`:
    about how many bytes the write takes). The writer cleans up after itself as the error passes through."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as exc:
        if is_full(exc):
            raise full_disk(path, needed()) from None
        if is_read_only(exc):
            where = Path(getattr(exc, "filename", None) or path)
            raise read_only(path, where, getattr(exc, "strerror", None) or str(exc)) from None
        raise


def check_writable(path: Path) -> None:
    """Refuse, before any work, to write an index at `path` on storage that cannot be written: the folder that
    holds it (the writers' lock and a rewrite go beside it), the index folder, its segments and catalogue."""
    path = Path(path)
    holder = path.parent
    while not holder.exists() and holder != holder.parent:
        holder = holder.parent
    for target in [holder] + [p for p in (path, path / "segments", path / "legalsearch.sqlite") if p.exists()]:
        if not os.access(target, os.W_OK):
            why = "a read-only file system" if _on_read_only_mount(target) else "permission denied"
            raise read_only(path, target, why)


def _on_read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8, or bytes) to `path` whole or not at all: into a temporary sibling, flushed,
    then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part-{os.getpid()}")
    body = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(partial, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under `folder` to disk (before it is renamed into place)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        fsync_dir(path)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal(building: Path, marker: str) -> None:
    """Make a folder being built final: every file flushed, then the `marker` that says it is unfinished (what a
    later `tidy` removes) taken out. The caller then renames it into place."""
    fsync_tree(building)
    (building / marker).unlink()


def rename_into_place(building: Path, target: Path) -> None:
    """Rename a sealed folder to `target` (a name not taken) and flush the parent, so the rename survives a crash."""
    building.rename(target)
    fsync_dir(target.parent)


def alive(pid: int) -> bool:
    """Whether a process with this id runs (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
