"""`legalsearch pull`: an index that is a copy of a publisher's releases (docs/releases.md), kept current.

A pull reads the release's signed manifest (`release.json`) and refuses, with one line and nothing changed, one
that is unsigned or not signed by a trusted key, tampered, expired (a frozen mirror) or older than what the index
holds (a rollback). It then downloads what the index lacks into a hidden folder beside it,
`.<index>.pull-<series>` (marked as legalsearch's, kept by an interrupted run and continued by the
next one), every file checked against the manifest's size and sha256 before anything is applied:

* a first pull (or a broken chain of deltas) installs the full release into that folder (`release.install_full`)
  and renames it into place the way a rewrite is (the previous index is renamed aside first, put back if the
  second rename fails);
* a later pull applies the deltas in order (`release.apply_delta`), each one commit of the kind updates make:
  readers and `serve` move to it without a restart.

The index records what it follows in `follow.json` (written whole, by rename): the release URL, the trusted
public keys, the model fingerprint and probe texts of the release. While it is there, `index` and `sync` refuse
to write the index (`refuse_if_following`), and `pull` refuses an index built here; `legalsearch detach` removes
it. The release step the index holds is in its catalogue (`release.held_release`), committed with the step.

Dense searches of a pulled index need the publisher's model: `usable_mode` compares the release's fingerprint
with the model queries are embedded with and embeds the published probe texts (cosine >= 0.99); on a mismatch a
dense mode asked for is refused with one line, and the default search answers lexically with a note.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import release, store
from .errors import IndexFormatError, LegalSearchError, ModelError, TargetError, UsageError
from .files import fsync_dir, human_bytes, write_atomic
from .progress import PlainProgress
from .pull_transport import Missing, Tampered, Transport, as_url, check_url
from .segments import BUILDING_MARKER

FOLLOW = "follow.json"  # inside the index: what it follows
FOLLOW_FORMAT = "legalsearch-follow"
STAGING = "pull"  # `.<index>.pull-<series>` beside the index
INSTALLING = "index"  # inside the staging folder: a full release being installed

Progress = Callable[[str, int, int], None]


class FollowError(UsageError):
    """An index that follows a publisher meets a local write, or a local index meets a pull."""


@dataclass
class PullReport:
    index: str
    url: str
    held: int | None  # the sequence held before the pull (None: nothing)
    sequence: int  # the sequence held after it
    steps: list[str] = field(default_factory=list)  # "full 5", "delta 6" … in the order applied
    downloaded: int = 0  # bytes fetched this run
    files: int = 0
    seconds: float = 0.0
    download_seconds: float = 0.0  # of which: downloading and checking every file
    apply_seconds: float = 0.0  # and installing or applying the steps
    fell_back: str | None = None  # why the full release was installed instead of deltas
    up_to_date: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


# --- what an index follows -------------------------------------------------------------------------------------


def read_follow(index: Path) -> dict | None:
    """The index's follow record, or None when it follows no publisher. A damaged one is one line."""
    path = Path(index) / FOLLOW
    if not path.is_file() or path.is_symlink():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if (
        not isinstance(record, dict)
        or record.get("format") != FOLLOW_FORMAT
        or not isinstance(record.get("url"), str)
        or not isinstance(record.get("keys"), list)
        or not all(isinstance(k, str) for k in record["keys"])
    ):
        raise IndexFormatError(
            f"{path}: damaged (not a follow record); run `legalsearch detach --index {index}` and pull again"
        )
    return record


def _write_follow(index: Path, record: dict) -> None:
    write_atomic(Path(index) / FOLLOW, json.dumps(record, ensure_ascii=False, indent=1) + "\n")
    fsync_dir(Path(index))


def _follow_record(url: str, keys: list, signed: dict) -> dict:
    return {
        "format": FOLLOW_FORMAT,
        "url": url,
        "keys": [release.public_key_pem(k) for k in keys],
        "keyids": [release.keyid(k) for k in keys],
        "series": signed["series"],
        "sequence": signed["sequence"],
        "expires": signed["expires"],
        "fingerprint": signed["fingerprint"],
        "probes": signed["probes"],
    }


_applying = threading.local()


@contextmanager
def _writing_as_pull() -> Iterator[None]:
    """While a pull applies a release, the writes it makes are the publisher's, not a local `index`/`sync`."""
    _applying.active = True
    try:
        yield
    finally:
        _applying.active = False


def refuse_if_following(index: Path) -> None:
    """Called by `index` and `sync` before they write: an index that follows a publisher is refused (one line)
    unless it is detached; its own pull's writes pass."""
    if getattr(_applying, "active", False):
        return
    try:
        record = read_follow(store.real_path(index))
    except IndexFormatError:
        record = {"url": "a publisher"}
    if record is not None:
        raise FollowError(
            f"{index}: this index follows the releases of {record['url']} (`legalsearch pull` keeps it current); "
            f"writing it here would make it differ from them: pull instead, or `legalsearch detach --index {index}` "
            "to make it yours"
        )


def detach(index: Path) -> dict:
    """Stop following: the index becomes one `index` and `sync` may write (and `pull` no longer updates). The
    follow record removed."""
    index = store.real_path(index)
    if not store.is_index(index):
        raise TargetError(f"{index}: not a legalsearch index; nothing to detach")
    with store.WriterLock(index):
        record = read_follow(index)
        if record is None:
            raise UsageError(f"{index}: follows no publisher (it was not pulled, or is detached already)")
        (index / FOLLOW).unlink()
        fsync_dir(index)
    return record


# --- the pull ---------------------------------------------------------------------------------------------------


def release_root(url: str) -> str:
    """The release folder's URL (what `pull` records): a URL or path, with or without the manifest's name."""
    url = as_url(url.strip())
    if url.rstrip("/").endswith("/" + release.MANIFEST):
        url = url.rstrip("/")[: -len(release.MANIFEST)]
    return url.rstrip("/")


def trusted_keys(trust: list[Path], record: dict | None) -> list:
    """The public keys a manifest must be signed by: those given (`--trust`), else those recorded at the first
    pull."""
    if trust:
        return [release.load_trusted_key(Path(path)) for path in trust]
    if record and record.get("keys"):
        try:
            return [release.public_key_from_pem(text) for text in record["keys"]]
        except (ValueError, TypeError, LegalSearchError):
            raise IndexFormatError(f"{FOLLOW}: a recorded key cannot be read; pull with --trust KEY.pub") from None
    raise UsageError("no key to check the release's signature with: pass the publisher's public key, --trust KEY.pub")


def check_target(index: Path, record: dict | None) -> None:
    """A pull writes an absent path, an empty folder, or an index that follows a publisher; never a folder of
    the user's, nor an index built here (one line, nothing touched)."""
    store.check_target(index)
    if store.is_index(index) and record is None:
        raise FollowError(
            f"{index}: an index built here (`index`/`sync`), not a copy of a publisher's releases; legalsearch will "
            "not replace it: pull into another --index (a new or empty folder)"
        )


def pull(
    index: Path,
    url: str | None = None,
    trust: list[Path] = (),
    *,
    transport: Transport | None = None,
    insecure: bool = False,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
) -> PullReport:
    """Bring `index` to the newest release at `url` (default: the URL it follows). See the module's docstring."""
    started = time.perf_counter()
    index = store.real_path(index)
    record = read_follow(index) if store.is_index(index) else None
    check_target(index, record)
    if url is None and record is None:
        raise UsageError(f"{index}: follows no publisher yet: give the release's URL (legalsearch pull URL)")
    root = release_root(url or record["url"])
    transport = transport or Transport(insecure=insecure)
    check_url(root, transport.insecure)
    keys = trusted_keys(list(trust), record)
    run = _Run(index, root, transport, progress or (lambda stage, done, total: None), notify or (lambda m: None))
    with store.WriterLock(index):
        store.tidy(index)
        held = release.held_release(index) if store.is_index(index) else None
        source = f"{root}/{release.MANIFEST}"
        data = transport.read(source)
        signed = release.verify(data, keys, source)
        release.check_fresh(signed, source=source)
        release.check_not_older(signed, held, source)
        run.signed, run.manifest_sha256 = signed, hashlib.sha256(data).hexdigest()
        run.follow = _follow_record(root, keys, signed)
        run.report = PullReport(str(index), root, held and held["sequence"], signed["sequence"])
        steps = release.plan_steps(signed, held)
        if steps:
            run.fetch_and_apply(steps)
        else:
            run.report.up_to_date = True
            _remove_staging(index, keep=None)
        _write_follow(index, run.follow)
    run.report.seconds = round(time.perf_counter() - started, 3)
    return run.report


@dataclass
class _Run:
    """One pull once its manifest is verified: download every file of the steps, then apply them."""

    index: Path
    root: str
    transport: Transport
    tick: Progress
    say: Callable[[str], None]
    signed: dict = field(default_factory=dict)
    manifest_sha256: str = ""
    follow: dict = field(default_factory=dict)
    report: PullReport | None = None
    staging: Path | None = None

    def fetch_and_apply(self, steps: list[release.Step]) -> None:
        self.staging = _staging(self.index, self.signed)
        try:
            try:
                self.fetch(steps)
            except Missing as exc:
                if steps[0].kind == "full":
                    raise
                steps = self.fall_back(f"a delta is missing from the server ({exc})")
            try:
                self.apply(steps)
            except release.ReleaseError as exc:
                if steps[0].kind == "full":
                    raise
                self.apply(self.fall_back(f"a delta did not apply ({exc})"))
        except (Tampered, release.ReleaseError):
            _remove_own(self.staging)  # refused: nothing of it is kept
            raise
        _remove_own(self.staging)

    def fall_back(self, why: str) -> list[release.Step]:
        """The full release and the deltas after it, downloaded, when the chain of deltas is broken."""
        self.report.fell_back = why
        self.say(f"{why}; installing the full release instead")
        steps = release.plan_steps(self.signed, None)
        self.fetch(steps)
        return steps

    def fetch(self, steps: list[release.Step]) -> None:
        """Every file of `steps` into the staging folder, each checked before it takes its name."""
        files = [(name, meta) for step in steps for name, meta in sorted(step.files.items())]
        total = sum(meta["bytes"] for _, meta in files)
        done = 0

        def moved(count: int) -> None:
            nonlocal done
            done += count
            self.tick("download", done, total)

        self.tick("download", 0, total)
        started = time.perf_counter()
        for name, meta in files:
            target = self.staging / "files" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            before = self.transport.requests
            self.transport.fetch(f"{self.root}/{name}", target, meta["bytes"], meta["sha256"], moved)
            if self.transport.requests > before:
                self.report.downloaded += meta["bytes"]
                self.report.files += 1
        self.report.download_seconds += round(time.perf_counter() - started, 3)
        self.tick("download", total, total)

    def apply(self, steps: list[release.Step]) -> None:
        started = time.perf_counter()
        try:
            self._apply(steps)
        finally:
            self.report.apply_seconds += round(time.perf_counter() - started, 3)

    def _apply(self, steps: list[release.Step]) -> None:
        for step in steps:
            part = self.staging / "files" / step.path if step.path else self.staging / "files"
            if step.kind == "full":
                self.install(part)
            else:
                with _writing_as_pull():
                    release.apply_delta(self.index, part, self.signed, step.sequence, self.manifest_sha256,
                                        on_step=self.on_step)  # fmt: skip
                store.pause("pull-delta-applied")
            self.report.steps.append(f"{step.kind} {step.sequence}")

    def install(self, part: Path) -> None:
        """Install the verified full release inside the staging folder, with its follow record, then rename it
        into place in one step (the previous index renamed aside first, put back if that fails)."""
        building = self.staging / INSTALLING
        if building.exists():
            shutil.rmtree(building)  # a run killed while installing: inside our own staging folder
        with _writing_as_pull():
            release.install_full(part, self.signed, building, self.manifest_sha256, on_step=self.on_step)
        _write_follow(building, self.follow)
        store.pause("pull-installed")
        store._swap_into_place(building, self.index)

    def on_step(self, name: str) -> None:
        self.tick(f"apply:{name}", 0, 0)
        store.pause("pull-building")  # the kill -9 tests: killed while a release is installed or applied


# --- the hidden folder beside the index -------------------------------------------------------------------------


def _staging_name(index: Path, signed: dict) -> str:
    """One per series: a release file never changes once a manifest names it, so what an interrupted run
    downloaded is reused even when the publisher has published again since."""
    series = "".join(c for c in signed["series"] if c.isalnum())[:16] or "release"
    return f".{index.name}.{STAGING}-{series}"


def _staging(index: Path, signed: dict) -> Path:
    """The hidden folder this release is downloaded into: the one an interrupted run left, else a new one
    (marked as legalsearch's). Those of other releases that legalsearch made are removed."""
    name = _staging_name(index, signed)
    _remove_staging(index, keep=name)
    folder = index.parent / name
    if folder.is_symlink() or (folder.exists() and not (folder / BUILDING_MARKER).is_file()):
        raise TargetError(f"{folder}: in the way of the download and not made by legalsearch; move it away")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BUILDING_MARKER).write_text("pull\n", encoding="utf-8")
    return folder


def _remove_staging(index: Path, keep: str | None) -> None:
    for leftover in index.parent.glob(f".{index.name}.{STAGING}-*"):
        if leftover.name != keep:
            _remove_own(leftover)


def _remove_own(folder: Path) -> None:
    """Remove a staging folder if legalsearch made it (its marker); anything else is left as it is."""
    if folder.is_dir() and not folder.is_symlink() and (folder / BUILDING_MARKER).is_file():
        shutil.rmtree(folder, ignore_errors=True)


# --- progress ---------------------------------------------------------------------------------------------------


@dataclass
class PlainBytes(PlainProgress):
    """`PlainProgress` for the download: `12:01:02 Downloading: 1.2 GB/2.9 GB (41%), 85.0 MB/s, about 20 s left`."""

    bytes_stages: tuple[str, ...] = ("download",)

    def _amount(self, stage: str, value: float, rate: bool = False) -> str:
        return human_bytes(value) if stage in self.bytes_stages else super()._amount(stage, value, rate)


# --- answers before the model arrives ---------------------------------------------------------------------------

_checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # reader → {release: (problem or None, until)}
_noted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # reader → the problems said already
_records: dict[str, tuple[tuple, dict | None]] = {}  # follow file → (its stat, the record read)
_lock = threading.Lock()
UNLOADABLE = "the model cannot be loaded here"
LOAD_RETRY_SECONDS = 60.0  # a model that could not be loaded (not downloaded yet) is tried again after this


def _record_of(index: Path) -> dict | None:
    """The follow record of `index`, read again only when the file changed (a stat per query)."""
    path = Path(index) / FOLLOW
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    cached = _records.get(str(path))
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        record = read_follow(index)
    except IndexFormatError:
        record = None
    _records[str(path)] = (key, record)
    return record


def usable_mode(search, mode: str | None, note: Callable[[str], None] | None = None) -> str | None:
    """The mode a search of `search` (a `LegalSearch`) runs in: `mode` itself, except on a pulled index whose
    query model does not give the publisher's vectors: a dense mode asked for is refused (`ModelError`, one line
    naming the difference); the default search answers lexically, with a note (once per reader and problem)."""
    record = _record_of(search.path)
    if record is None:
        return mode
    wanted = mode or search.default_mode
    if wanted == "lexical":
        return mode
    problem = _model_problem(search, record)
    if problem is None:
        return mode
    if mode is not None:
        raise ModelError(f"{search.path}: {mode} search refused: {problem}; --mode lexical answers without the model")
    with _lock:
        said = _noted.setdefault(search, set())
        fresh = problem not in said
        said.add(problem)
    if fresh:
        (note or _stderr_note)(f"{search.path}: answering lexically: {problem}")
    return "lexical"


def _stderr_note(message: str) -> None:
    import sys

    print(f"note: {message}", file=sys.stderr, flush=True)


def _model_problem(search, record: dict) -> str | None:
    """`model_problem`, computed once per reader and release held (a model that could not be loaded: again
    after `LOAD_RETRY_SECONDS`, so that a server moves to dense answers once the model has arrived)."""
    key = f"{record.get('series')}-{record.get('sequence')}"
    with _lock:
        known = _checked.get(search, {}).get(key)
        if known is not None and time.monotonic() < known[1]:
            return known[0]
    problem = model_problem(record, search)
    loading = problem is not None and problem.startswith(UNLOADABLE)
    until = time.monotonic() + LOAD_RETRY_SECONDS if loading else float("inf")
    with _lock:
        _checked.setdefault(search, {})[key] = (problem, until)
    return problem


def model_problem(record: dict, search) -> str | None:
    """What keeps the model `search` embeds queries with from giving the release's vectors, or None: another
    model, revision or dim than the fingerprint, a model that cannot be loaded here, or probe texts whose
    vectors differ (cosine < 0.99)."""
    fingerprint = record.get("fingerprint") or {}
    try:
        info = search.encoder.info
    except LegalSearchError as exc:
        return f"{UNLOADABLE} ({exc})"
    except Exception as exc:  # a model library's own failure: said in one line
        return f"{UNLOADABLE} ({type(exc).__name__}: {exc})"
    from .indexing import same_model

    if fingerprint.get("id") and not same_model({"id": fingerprint["id"]}, info.model_id):
        return f"the release's vectors are of model {fingerprint['id']}, queries would be embedded with {info.model_id}"
    revision = fingerprint.get("revision")
    if revision and info.revision and revision != info.revision:
        return f"the release's model is revision {revision}, the local one {info.revision}"
    if fingerprint.get("dim") and fingerprint["dim"] != info.dim:
        return f"the release's vectors have {fingerprint['dim']} dims, the local model gives {info.dim}"
    try:
        release.check_probes(record, search.embed)
    except release.ReleaseError as exc:
        return str(exc)
    return None
