"""The query-encoder daemon: one process per user and model that keeps a `QueryEncoder` loaded, so that the
second `legalsearch ask` imports neither OpenVINO nor the model (as dmypy or Gradle's daemon do).

The first dense `ask` starts it (detached, in a session of its own) and waits for it to load; later asks send
their question over a Unix socket and get its vector back. The index stays in the asking process, so an answer
is never staler than the index. Only questions and vectors cross the socket; each answer is checked: the daemon
must be run by this user (`SO_PEERCRED`), report the very model, revision, runtime and export the asking process
resolved, and send finite unit vectors of the right shape. Anything else — no daemon, a dead or slow one, a
wrong answer — and the asking process encodes in-process as it would without a daemon; the user sees nothing.

* Where: `$XDG_RUNTIME_DIR/legalsearch/`, else `~/.cache/legalsearch/run/`: a folder of this user's, mode
  0700 (one with looser rights, or another owner, is not used); the socket is 0600. A socket left by a daemon
  that died is replaced by the next one (a lock file per model says whether its daemon lives).
* How long: it exits after `LEGALSEARCH_ENCODER_DAEMON_IDLE` seconds without a question (900), when its socket
  is removed, or on SIGTERM.
* Off: `LEGALSEARCH_ENCODER_DAEMON=0`. The Python API and `serve` never use it (they keep their model loaded).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .embedding import EncoderInfo
from .files import alive

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .query_encoder import LeanPlan, QueryEncoder

SWITCH = "LEGALSEARCH_ENCODER_DAEMON"  # "0" (or off/no/false) turns the daemon off
IDLE = "LEGALSEARCH_ENCODER_DAEMON_IDLE"  # seconds without a question before it exits
DEFAULT_IDLE = 900.0
PROTOCOL = 1  # in the daemon's key: a client never talks to a daemon of another protocol
START_WAIT = 90.0  # seconds a first ask waits for the daemon to load the model (a large one, compiled once)
REPLY_WAIT = 10.0  # seconds for an answer to one request (a query takes milliseconds)
MAX_MESSAGE = 256 << 20
HEADER = struct.Struct(">I")
CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
SOCKET_PATH_MAX = 107  # sun_path, less its terminating NUL


# --- where, and whether ----------------------------------------------------------------------------------
def enabled() -> bool:
    """Whether the daemon may be used: not turned off, and a platform with Unix sockets and peer credentials."""
    if os.environ.get(SWITCH, "1").strip().lower() in ("0", "off", "no", "false"):
        return False
    return hasattr(socket, "AF_UNIX") and hasattr(socket, "SO_PEERCRED") and hasattr(os, "getuid")


def idle_seconds() -> float:
    try:
        seconds = float(os.environ.get(IDLE, DEFAULT_IDLE))
    except ValueError:
        return DEFAULT_IDLE
    return seconds if math.isfinite(seconds) and seconds > 0 else DEFAULT_IDLE


def runtime_dir(create: bool = True) -> Path | None:
    """This user's private folder for daemon sockets, or None where there is none fit for it."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base) and os.path.isdir(base):
        folder = Path(base) / "legalsearch"
    else:
        folder = Path.home() / ".cache" / "legalsearch" / "run"
    try:
        if create:
            folder.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o700)
        info = os.lstat(folder)
    except OSError:
        return None
    private = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
    return folder if private else None


def daemon_key(plan: LeanPlan) -> str:
    """What a daemon serves, as a digest: the plan, the state of the files it loads, and this code's own."""
    here = Path(__file__).resolve()
    files = [
        plan.xml,
        plan.xml.with_suffix(".bin"),
        plan.folder / "tokenizer.json",
        here,
        here.parent / "query_encoder.py",
    ]
    stamps = []
    for path in files:
        try:
            found = path.stat()
            stamps.append([str(path), found.st_size, found.st_mtime_ns])
        except OSError:
            stamps.append([str(path), None, None])
    described = [PROTOCOL, sys.executable, plan_dict(plan), stamps]
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def plan_dict(plan: LeanPlan) -> dict:
    return {
        "folder": str(plan.folder),
        "xml": str(plan.xml),
        "info": asdict(plan.info),
        "pooling": plan.pooling,
        "hint": plan.hint,
    }


def plan_from(data: dict) -> LeanPlan:
    from .query_encoder import LeanPlan

    info = EncoderInfo(**data["info"])
    return LeanPlan(Path(data["folder"]), Path(data["xml"]), info, data["pooling"], data["hint"])


def _paths(folder: Path, key: str) -> tuple[Path, Path, Path]:
    stem = folder / f"encoder-{key[:20]}"
    return stem.with_suffix(".sock"), stem.with_suffix(".lock"), stem.with_suffix(".log")


# --- messages --------------------------------------------------------------------------------------------
def _send(conn: socket.socket, header: dict, payload: bytes = b"") -> None:
    body = json.dumps(header).encode()
    conn.sendall(HEADER.pack(len(body)) + body + payload)


def _receive_exactly(conn: socket.socket, size: int) -> bytes:
    if size > MAX_MESSAGE:
        raise ConnectionError("message too large")
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(conn: socket.socket) -> dict:
    (size,) = HEADER.unpack(_receive_exactly(conn, HEADER.size))
    message = json.loads(_receive_exactly(conn, size))
    if not isinstance(message, dict):
        raise ConnectionError("not a message")
    return message


def peer_uid(conn: socket.socket) -> int:
    return CREDENTIALS.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, CREDENTIALS.size))[1]


# --- the asking side ------------------------------------------------------------------------------------
class DaemonError(Exception):
    """The daemon cannot answer, or answered something this process will not use."""


class DaemonEncoder:
    """The `Encoder` interface over the daemon that serves `plan`; whatever the daemon cannot answer is encoded
    in-process (`plan.build()`, loaded on first need), and after one failure the daemon is not asked again."""

    def __init__(self, plan: LeanPlan, folder: Path) -> None:
        self.plan = plan
        self.info = plan.info
        self.key = daemon_key(plan)
        self.socket_path, self.lock_path, _ = _paths(folder, self.key)
        self._conn: socket.socket | None = None
        self._failed = False
        self._local: QueryEncoder | None = None
        self._lock = threading.Lock()  # one request at a time on the connection
        self._building = threading.Lock()

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def served(self) -> bool:
        """Whether the daemon answers this process (so far)."""
        return self._conn is not None and not self._failed

    def encode(
        self, texts: Sequence[str], batch_size: int = 16, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        texts = list(texts)
        if texts:
            with contextlib.suppress(DaemonError):
                header, payload = self._ask({"op": "encode", "texts": texts, "batch_size": int(batch_size)})
                vectors = self._vectors(header, payload, len(texts))
                if progress is not None:
                    progress(len(texts))
                return vectors
        return self._in_process().encode(texts, batch_size=batch_size, progress=progress)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        texts = list(texts)
        if not texts:
            return []
        with contextlib.suppress(DaemonError):
            header, _ = self._ask({"op": "count", "texts": texts})
            counts = header.get("counts")
            if _token_counts(counts, len(texts)):
                return counts
            self._give_up()
        return self._in_process().count_tokens(texts)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # the daemon's answers, checked
    def _vectors(self, header: dict, payload: bytes, rows: int) -> np.ndarray:
        shape = (rows, self.dim)
        if header.get("shape") != list(shape) or len(payload) != rows * self.dim * 4:
            self._give_up()
        vectors = np.frombuffer(payload, dtype="<f4").reshape(shape).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1) if rows else np.ones(0)
        if not np.isfinite(vectors).all() or np.abs(norms - 1).max(initial=0) > 1e-3:
            self._give_up()
        return vectors

    def _ask(self, request: dict) -> tuple[dict, bytes]:
        with self._lock:
            if self._failed:
                raise DaemonError
            try:
                conn = self._conn or self._connect_or_start()
                _send(conn, request)
                header = _receive(conn)
                payload = _receive_exactly(conn, int(header.get("nbytes", 0)))
            except (OSError, ValueError, TypeError, ConnectionError, DaemonError):
                self._failed = True
                self._drop()
                raise DaemonError from None
            if header.get("key") != self.key or header.get("info") != asdict(self.info) or "error" in header:
                self._failed = True
                self._drop()
                raise DaemonError
            self._conn = conn
            return header, payload

    def _give_up(self) -> None:
        with self._lock:
            self._failed = True
            self._drop()
        raise DaemonError

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _in_process(self) -> QueryEncoder:
        with self._building:
            if self._local is None:
                self._local = self.plan.build()
            return self._local

    # reaching the daemon
    def _connect_or_start(self) -> socket.socket:
        """A connection to the daemon: the running one's, else one this process starts (at most twice), waiting
        while a daemon holds the model's lock (it is loading)."""
        deadline, starts = time.monotonic() + START_WAIT, 0
        while True:
            with contextlib.suppress(OSError):
                return self._connect()
            if time.monotonic() >= deadline:
                raise DaemonError
            if _locked(self.lock_path):
                time.sleep(0.02)
            elif starts == 2 or not _start(self.plan, deadline - time.monotonic()):
                raise DaemonError
            else:
                starts += 1

    def _connect(self) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(REPLY_WAIT)
            conn.connect(str(self.socket_path))
            if peer_uid(conn) != os.getuid():
                raise DaemonError
        except BaseException:
            conn.close()
            raise
        return conn


def _locked(path: Path) -> bool:
    """Whether a daemon holds the lock at `path` (it lives, perhaps still loading its model)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # and with it the shared lock, if this process took it
    return False


def _token_counts(counts: object, texts: int) -> bool:
    """Whether `counts` is what a daemon owes for `texts` texts: as many non-negative integers."""
    if not isinstance(counts, list) or len(counts) != texts:
        return False
    return all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)


def daemon_encoder(plan: LeanPlan) -> DaemonEncoder | None:
    """The daemon's encoder for `plan`, or None where the daemon is off or has no private folder to live in."""
    if not enabled():
        return None
    folder = runtime_dir()
    if folder is None:
        return None
    encoder = DaemonEncoder(plan, folder)
    return encoder if len(os.fsencode(encoder.socket_path)) <= SOCKET_PATH_MAX else None


def _start(plan: LeanPlan, wait: float) -> str:
    """Start a daemon for `plan`, detached, and wait for its word: 'ready', 'busy' (another one runs or loads),
    or '' (it failed, or did not answer within `wait` seconds)."""
    read, write = os.pipe()
    package_root = str(Path(__file__).resolve().parent.parent)
    code = f"import sys; sys.path.insert(0, {package_root!r}); from legalsearch.encoder_daemon import main; main()"
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, write, 1),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    argv = [sys.executable, "-c", code, json.dumps(plan_dict(plan))]
    try:
        pid = os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=actions, setsid=True)
    except OSError:
        os.close(read)
        return ""
    finally:
        os.close(write)
    try:
        return _word(read, pid, time.monotonic() + wait)
    finally:
        os.close(read)


def _word(read: int, pid: int, deadline: float) -> str:
    received = b""
    while b"\n" not in received:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([read], [], [], left)[0]:
            return ""
        chunk = os.read(read, 64)
        if not chunk:
            break
        received += chunk
    word = received.split(b"\n", 1)[0].decode(errors="replace")
    if word != "ready":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # it exits: no zombie while this process runs on
    return word if word in ("ready", "busy") else ""


def running_daemons(folder: Path | None = None) -> list[int]:
    """The process ids of this user's daemons whose sockets answer in `folder` (default: `runtime_dir()`)."""
    folder = folder or runtime_dir(create=False)
    found = []
    for path in sorted(folder.glob("encoder-*.sock")) if folder else []:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(1.0)
            conn.connect(str(path))
            pid, uid, _ = CREDENTIALS.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, CREDENTIALS.size))
            if uid == os.getuid():
                found.append(pid)
    return found


def stop_daemons(folder: Path | None = None, wait: float = 10.0) -> list[int]:
    """Stop this user's daemons in `folder` (SIGTERM: each removes its socket) and wait for them to go; their
    process ids."""
    pids = running_daemons(folder)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.02)
    return pids


def _alive(pid: int) -> bool:
    if not alive(pid):
        return False
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False  # a child of this process (a test's), now reaped
    return True


# --- the daemon ----------------------------------------------------------------------------------------------
class Daemon:
    """Serves one `QueryEncoder` on a Unix socket to processes of the same user."""

    def __init__(self, encoder: QueryEncoder, key: str, listener: socket.socket, path: Path, idle: float) -> None:
        self.encoder = encoder
        self.key = key
        self.info = asdict(encoder.info)
        self.listener = listener
        self.path = path
        self.inode = os.stat(path).st_ino
        self.idle = idle
        self.last = time.monotonic()
        self.active = 0
        self._state = threading.Lock()

    def run(self) -> None:
        while True:
            with self._state:
                quiet_for = time.monotonic() - self.last
                if self.active == 0 and quiet_for >= self.idle:
                    return
            if not self._socket_is_ours():
                return  # removed or replaced: nobody can reach this daemon any more
            self.listener.settimeout(min(1.0, max(0.05, self.idle - quiet_for)))
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _socket_is_ours(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            if peer_uid(conn) != os.getuid():
                return
            with self._state:
                self.active += 1
            try:
                conn.settimeout(self.idle)
                while True:
                    try:
                        request = _receive(conn)
                    except (OSError, ValueError, ConnectionError):
                        return
                    header, payload = self._answer(request)
                    with self._state:
                        self.last = time.monotonic()
                    _send(conn, {**header, "key": self.key, "info": self.info, "nbytes": len(payload)}, payload)
            except OSError:
                return
            finally:
                with self._state:
                    self.active -= 1
                    self.last = time.monotonic()

    def _answer(self, request: dict) -> tuple[dict, bytes]:
        texts = request.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return {"error": "texts: a list of strings"}, b""
        try:
            if request.get("op") == "encode":
                batch = request.get("batch_size", 16)
                batch = batch if isinstance(batch, int) and 0 < batch <= 1024 else 16
                vectors = np.ascontiguousarray(self.encoder.encode(texts, batch_size=batch), dtype="<f4")
                return {"shape": list(vectors.shape)}, vectors.tobytes()
            if request.get("op") == "count":
                return {"counts": [int(c) for c in self.encoder.count_tokens(texts)]}, b""
        except Exception as exc:  # one bad request never ends the daemon; the asker encodes in-process
            return {"error": type(exc).__name__}, b""
        return {"error": "unknown op"}, b""


def _listen(path: Path) -> socket.socket:
    """A listening socket at `path` (whatever was there is a dead daemon's: the caller holds the lock), 0600."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(mask)
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener


def _say(word: str) -> None:
    """Tell the process that started this one how it went (stdout is its pipe), then let go of the pipe."""
    with contextlib.suppress(OSError):
        os.write(1, word.encode() + b"\n")
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)


def _take_lock(path: Path) -> bool:
    """Hold the model's lock for the life of this process; False when another daemon holds it. A few tries: a
    client looks at the lock (a shared lock, for an instant) to learn whether a daemon lives."""
    lock = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    for _ in range(5):
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True  # `lock` stays open: the lock lasts until this process ends
        except OSError:
            time.sleep(0.01)
    os.close(lock)
    return False


def serve(plan: LeanPlan) -> int:
    """Run the daemon of `plan` until it has been idle long enough; 0 when it ran or another one runs."""
    os.chdir("/")
    folder = runtime_dir()
    if folder is None:
        return 2
    key = daemon_key(plan)
    path, lock_path, log_path = _paths(folder, key)
    if not _take_lock(lock_path):
        _say("busy")
        return 0
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.dup2(log, 2)  # what OpenVINO prints goes to the log, never to a user's terminal
    from .quiet import quiet_third_party

    with quiet_third_party():
        encoder = plan.build()
        encoder.encode(["¿?"])  # the first inference allocates what later ones reuse
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = _listen(path)
    daemon = Daemon(encoder, key, listener, path, idle_seconds())
    _say("ready")
    try:
        daemon.run()
    finally:
        if daemon._socket_is_ours():
            with contextlib.suppress(OSError):
                path.unlink()
        listener.close()
    return 0


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the ask that started it
    try:
        plan = plan_from(json.loads(sys.argv[1]))
    except (IndexError, ValueError, KeyError, TypeError):
        sys.exit(2)
    sys.exit(serve(plan))
