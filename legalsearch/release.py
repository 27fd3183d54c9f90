"""The release format (docs/releases.md): a signed manifest, full releases and deltas as plain files, and what a
follower does with them once downloaded and verified.

    release.json          {"signed": {...}, "signatures": [{"algorithm": "ed25519", "keyid", "signature"}]}
    full-<seq>/           index.json, catalogue.sqlite.gz, vectors-NNN.f16.npy
    delta-<seq>/          changes.sqlite.gz, vectors-NNN.f16.npy

What pull.py calls: `load_trusted_key`, `verify` (signature), `parse` (shape), `check_fresh` (expiry),
`check_not_older` (rollback), `check_files` (sizes and sha256), `plan_steps` (which parts to fetch),
`held_release` (what an index holds), `install_full` (a full release → an index folder), `apply_delta` (one
delta → one commit), `check_probes` (the local model against the published vectors). Signing and key files are
the `cryptography` package's Ed25519; nothing here is hand-made cryptography. Nothing is pickled.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import itertools
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .errors import LegalSearchError
from .files import seal, sha256_file

FORMAT = "legalsearch-release"
FORMAT_VERSION = 1
PART_FORMAT = "legalsearch-release-part"
MANIFEST = "release.json"
PART_MANIFEST = "part.json"
INDEX_MANIFEST = "index.json"
CATALOGUE = "catalogue.sqlite.gz"
CHANGES = "changes.sqlite.gz"
PART_ROWS = 1 << 17  # rows per vectors file: 256 MB at 1024 dims (float16)
SMALL_ROWS = PART_ROWS // 4  # a follower's segments under this many rows are merged together (`merge_small`)
MAX_SMALL = 4
TEXT_BATCH = 4096  # chunk texts analysed for BM25 at a time when a release is installed
VECTOR_BATCH = 4096  # vectors read at a time to build a FAISS file when a release is installed (16 MB at 1024 dims)
POSTINGS_BLOCK = 1 << 21  # BM25 postings merged at a time when a release is installed
PROBE_COSINE = 0.99  # a local model must give each probe text at least this cosine with the published vector
PROBES = 5
DIGESTS = "CREATE TABLE IF NOT EXISTS digests (boe_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL)"
PULLED = "CREATE TABLE IF NOT EXISTS pulled (id INTEGER PRIMARY KEY, series TEXT NOT NULL, sequence INTEGER NOT NULL, at TEXT NOT NULL, manifest_sha256 TEXT NOT NULL)"  # noqa: E501 (the follower's log of release steps)

# The catalogue part: what a follower cannot rebuild (docs/releases.md, "The catalogue part").
PART_SCHEMA = """
CREATE TABLE chunks (
    row INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL, boe_id TEXT NOT NULL, article_id TEXT NOT NULL,
    wording TEXT NOT NULL, part INTEGER NOT NULL, head TEXT, spans TEXT, text TEXT
);
CREATE TABLE digests (boe_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL);
CREATE TABLE removed (boe_id TEXT PRIMARY KEY);
"""  # laws and articles: created from the index's own tables (their columns, but articles' `id`)


class ReleaseError(LegalSearchError):
    """A release that cannot be used: unsigned, tampered, stale, rolled back, damaged or of another format."""


@dataclass(frozen=True)
class Step:
    """One part a follower fetches and applies: a full release or a delta, its folder in OUT and its files."""

    kind: str  # "full" or "delta"
    path: str  # the part's folder, relative to the release root ("" for an empty delta)
    sequence: int  # the state the index holds once the step is applied
    files: dict  # relative path → {"bytes", "sha256"}
    bytes: int


# --- canonical JSON and signatures --------------------------------------------------------------------------


def canonical(signed: dict) -> bytes:
    """The bytes a signature covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def keyid(public_key) -> str:
    """The first 16 hex digits of sha256 of the raw 32-byte public key."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(path: Path) -> str:
    """Write a new Ed25519 private key to `path` (PKCS#8 PEM, mode 0600, created exclusively: an existing file is
    refused) and its public key to `path`.pub; the key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    public_path = Path(f"{path}.pub")
    for target in (path, public_path):
        if target.exists() or target.is_symlink():
            raise ReleaseError(f"{target}: already exists; legalsearch never overwrites a key: choose another KEY")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(private)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    try:
        with open(public_path, "xb") as f:
            f.write(public)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return keyid(key.public_key())


def load_private_key(path: Path):
    """The Ed25519 private key in `path` (PKCS#8 PEM, as `keygen` writes it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise ReleaseError(
            f"{path}: cannot read the key ({exc.strerror}); give the KEY `legalsearch keygen` wrote"
        ) from None
    except (ValueError, TypeError):
        raise ReleaseError(
            f"{path}: not an unencrypted PEM private key; make one with `legalsearch keygen KEY`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"{path}: not an Ed25519 key; make one with `legalsearch keygen KEY`")
    return key


def load_trusted_key(path: Path):
    """The Ed25519 public key in `path` (SubjectPublicKeyInfo PEM, as `keygen` writes KEY.pub)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise ReleaseError(f"{path}: cannot read the key ({exc.strerror}); give the KEY.pub of the publisher") from None
    except (ValueError, TypeError):
        raise ReleaseError(f"{path}: not a PEM public key; give the KEY.pub `legalsearch keygen` wrote") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseError(f"{path}: not an Ed25519 public key; give the KEY.pub `legalsearch keygen` wrote")
    return key


def public_key_pem(public_key) -> str:
    """A public key as PEM text (to record the keys trusted at a first pull)."""
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(
        "ascii"
    )


def public_key_from_pem(text: str):
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_public_key(text.encode("ascii"))


def sign(signed: dict, private_key) -> bytes:
    """The manifest file's bytes: `signed` and its Ed25519 signature over `canonical(signed)`."""
    signature = private_key.sign(canonical(signed))
    envelope = {
        "signed": signed,
        "signatures": [
            {
                "algorithm": "ed25519",
                "keyid": keyid(private_key.public_key()),
                "signature": base64.b64encode(signature).decode("ascii"),
            }
        ],
    }
    return (json.dumps(envelope, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def verify(data: bytes, trusted: list, source: str = MANIFEST) -> dict:
    """The `signed` part of a manifest file's bytes once a signature by one of the `trusted` public keys checks,
    parsed (`parse`). One line (`ReleaseError`) for an unreadable, unsigned, unknown-key or tampered manifest."""
    from cryptography.exceptions import InvalidSignature

    try:
        envelope = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ReleaseError(f"{source}: not a release manifest (not JSON); check the URL") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("signed"), dict):
        raise ReleaseError(f"{source}: not a release manifest (no 'signed' object); check the URL")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise ReleaseError(f"{source}: the manifest is unsigned; refusing it (publish with --key)")
    body = canonical(envelope["signed"])
    by_id = {keyid(k): k for k in trusted}
    known = False
    for entry in signatures:
        if not isinstance(entry, dict) or entry.get("algorithm") != "ed25519":
            continue
        key = by_id.get(entry.get("keyid"))
        if key is None:
            continue
        known = True
        try:
            key.verify(base64.b64decode(str(entry.get("signature", "")), validate=True), body)
        except (InvalidSignature, ValueError):
            continue
        return parse(envelope["signed"], source)
    if not known:
        ids = ", ".join(str(e.get("keyid"))[:16] for e in signatures if isinstance(e, dict))
        raise ReleaseError(
            f"{source}: signed by a key not trusted here ({ids}); pass the publisher's KEY.pub to --trust"
        )
    raise ReleaseError(
        f"{source}: the signature does not match the manifest: it was changed after signing; refusing it"
    )


# --- the manifest's shape and the checks a follower makes ---------------------------------------------------


def _files_problem(files: object, prefix: str) -> str | None:
    if not isinstance(files, dict):
        return "'files' is not an object"
    for name, meta in files.items():
        parts = name.split("/") if isinstance(name, str) else []
        if not parts or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
            return f"file {str(name)[:80]!r} is not a plain relative path"
        if prefix and parts[0] != prefix:
            return f"file {name!r} is outside its part {prefix!r}"
        if not isinstance(meta, dict) or not _count(meta.get("bytes")) or not _sha256(meta.get("sha256")):
            return f"file {name!r} lacks bytes or sha256"
    return None


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _part_problem(part: object, what: str) -> str | None:
    if not isinstance(part, dict):
        return f"'{what}' is not an object"
    if not isinstance(part.get("path"), str) or not _count(part.get("bytes")):
        return f"'{what}' lacks its path or bytes"
    return _files_problem(part.get("files"), part["path"])


def manifest_problem(signed: object) -> str | None:
    """What is wrong with the shape of a manifest's `signed` part (None: nothing)."""
    if not isinstance(signed, dict):
        return "not an object"
    if signed.get("format") != FORMAT:
        return f"'format' is not {FORMAT!r}"
    if signed.get("format_version") != FORMAT_VERSION:
        return f"format version {signed.get('format_version')!r}; this legalsearch reads {FORMAT_VERSION}: upgrade it"
    expected = {"series": str, "sequence": int, "created": str, "expires": str, "fingerprint": dict, "index": dict,
                "counts": dict, "full": dict, "deltas": list, "probes": list}  # fmt: skip
    for key, kind in expected.items():
        if not isinstance(signed.get(key), kind) or isinstance(signed.get(key), bool):
            return f"{key!r} is missing or not {kind.__name__}"
    for key in ("created", "expires"):
        if _time(signed[key]) is None:
            return f"{key!r} is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)"
    full = signed["full"]
    problem = _part_problem(full, "full")
    if problem or not _count(full.get("sequence")) or full["sequence"] > signed["sequence"]:
        return problem or "'full' lacks a sequence at or before the manifest's"
    previous = None
    for delta in signed["deltas"]:
        if not isinstance(delta, dict):
            return "a delta is not an object"
        problem = _part_problem(delta, "delta") if delta.get("files") else None
        if problem or not _count(delta.get("from")) or delta.get("to") != delta.get("from", -2) + 1:
            return problem or "a delta lacks from/to (to = from + 1)"
        if previous is not None and delta["from"] != previous:
            return "the deltas do not follow one another"
        previous = delta["to"]
    if previous is not None and previous != signed["sequence"]:
        return "the last delta does not end at the manifest's sequence"
    first = signed["deltas"][0]["from"] if signed["deltas"] else signed["sequence"]
    if not first <= full["sequence"] <= signed["sequence"]:
        return "the deltas do not lead from the full release to the manifest's sequence"
    for probe in signed["probes"]:
        if (
            not isinstance(probe, dict)
            or not isinstance(probe.get("text"), str)
            or not isinstance(probe.get("vector"), str)
        ):
            return "a probe lacks its text or vector"
    return None


def parse(signed: object, source: str = MANIFEST) -> dict:
    """`signed` checked for the shape this code reads (one line otherwise)."""
    problem = manifest_problem(signed)
    if problem:
        raise ReleaseError(f"{source}: not a release this legalsearch can read ({problem})")
    return signed


def _time(text: object) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def utc(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_fresh(signed: dict, now: datetime.datetime | None = None, source: str = MANIFEST) -> None:
    """Refuse a manifest past its expiry (a frozen mirror serving an old release forever)."""
    now = now or datetime.datetime.now(datetime.UTC)
    if _time(signed["expires"]) <= now:
        raise ReleaseError(
            f"{source}: the release expired on {signed['expires']} (a stale or frozen mirror); nothing was changed: "
            "ask the publisher to publish again"
        )


def check_not_older(signed: dict, held: dict | None, source: str = MANIFEST) -> None:
    """Refuse a release of another series, or older than the one the index holds (`held_release`)."""
    if held is None:
        return
    if held["series"] != signed["series"]:
        raise ReleaseError(
            f"{source}: a release of another series ({signed['series'][:12]}) than the index follows "
            f"({held['series'][:12]}); nothing was changed: pull into another --index"
        )
    if signed["sequence"] < held["sequence"]:
        raise ReleaseError(
            f"{source}: release {signed['sequence']} is older than release {held['sequence']} the index holds "
            "(a rollback); nothing was changed"
        )


def check_files(root: Path, files: dict) -> None:
    """Every file of `files` (path → bytes, sha256) under `root` has its size and sha256 (one line naming the
    first that does not)."""
    for name, meta in files.items():
        path = root / name
        if not path.is_file():
            raise ReleaseError(f"{path}: missing from the release; nothing was changed: pull again")
        size = path.stat().st_size
        if size != meta["bytes"] or sha256_file(path) != meta["sha256"]:
            raise ReleaseError(
                f"{name}: its sha256 differs from the signed manifest's (damaged or tampered); nothing was changed"
            )


def plan_steps(signed: dict, held: dict | None) -> list[Step]:
    """What a follower holding `held` (None: nothing) fetches and applies, in order: the deltas after its
    sequence when the manifest keeps an unbroken chain of them, else the full release and the deltas after it.
    Empty when it holds the newest."""
    deltas = {d["from"]: d for d in signed["deltas"]}

    def chain(start: int) -> list[Step] | None:
        steps, at = [], start
        while at < signed["sequence"]:
            delta = deltas.get(at)
            if delta is None:
                return None
            steps.append(
                Step("delta", delta.get("path", ""), delta["to"], delta.get("files", {}), delta.get("bytes", 0))
            )
            at = delta["to"]
        return steps

    if held is not None and held["series"] == signed["series"]:
        steps = chain(held["sequence"])
        if steps is not None:
            return steps
    full = signed["full"]
    rest = chain(full["sequence"])
    if rest is None:
        raise ReleaseError("the manifest's deltas do not lead from its full release to its sequence")
    return [Step("full", full["path"], full["sequence"], full["files"], full["bytes"]), *rest]


# --- what an index holds --------------------------------------------------------------------------------------


def held_release(index: Path) -> dict | None:
    """The release step an index last applied: {"series", "sequence", "at", "manifest_sha256"}; None for an index
    that was never pulled."""
    from . import store

    database = Path(index) / store.DATABASE
    if not database.is_file():
        return None
    connection = store.connect(database)
    try:
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "pulled" not in tables:
            return None
        row = connection.execute(
            "SELECT series, sequence, at, manifest_sha256 FROM pulled ORDER BY id DESC LIMIT 1"
        ).fetchone()
    finally:
        connection.close()
    return dict(row) if row else None


# --- probes --------------------------------------------------------------------------------------------------


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32)


def check_probes(
    signed: dict, embed: Callable[[list[str]], np.ndarray], threshold: float = PROBE_COSINE
) -> list[float]:
    """Embed the probe texts with `embed` (texts → full-dim vectors, the local model) and compare with the
    published vectors; the cosines. One line when any is under `threshold` (another model, revision, pooling or a
    runtime that computes differently): dense answers would not be the publisher's."""
    probes = signed["probes"]
    if not probes:
        return []
    local = np.asarray(embed([p["text"] for p in probes]), dtype=np.float32)
    published = np.stack([decode_vector(p["vector"]) for p in probes])
    if local.shape != published.shape:
        raise ReleaseError(
            f"the local model gives {local.shape[1]}-dim vectors, the release's are {published.shape[1]}-dim; use "
            f"the release's model ({signed['fingerprint'].get('id')})"
        )
    norms = np.linalg.norm(local, axis=1) * np.linalg.norm(published, axis=1)
    cosines = [float(c) for c in np.sum(local * published, axis=1) / np.maximum(norms, 1e-12)]
    worst = min(cosines)
    if worst < threshold:
        raise ReleaseError(
            f"the local model's vectors differ from the release's (probe cosine {worst:.3f} < {threshold}): not "
            f"the model {signed['fingerprint'].get('id')} at revision {signed['fingerprint'].get('revision')} "
            f"({signed['fingerprint'].get('runtime')}); dense searches would not match the publisher's"
        )
    return cosines


# --- gzip'd SQLite parts --------------------------------------------------------------------------------------


def gzip_file(source: Path, target: Path) -> None:
    """`target` = gzip of `source`, streamed (mtime 0: the same bytes give the same file). Level 4: on a catalogue
    part 6 % larger than level 6 and five times faster."""
    with open(source, "rb") as src, open(target, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=4) as out:
            shutil.copyfileobj(src, out, 1 << 20)
        raw.flush()
        os.fsync(raw.fileno())


def gunzip_file(source: Path, target: Path) -> None:
    try:
        with gzip.open(source, "rb") as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except (OSError, EOFError) as exc:
        raise ReleaseError(f"{source}: not a readable gzip file ({exc}); pull again") from None


def vector_files(rows: int) -> list[str]:
    """The names of the vectors files of a part of `rows` rows."""
    return [f"vectors-{i:03d}.f16.npy" for i in range((rows + PART_ROWS - 1) // PART_ROWS)]


def read_vector_parts(folder: Path, rows: int, full_dim: int) -> Iterator[np.ndarray]:
    """The part's vectors, one file at a time (memory-mapped), checked for shape and dtype."""
    from .segments import check_npy

    for i, name in enumerate(vector_files(rows)):
        expected = min(PART_ROWS, rows - i * PART_ROWS)
        yield check_npy(folder / name, (expected, full_dim), np.float16)


# --- chunk texts: shipped as a slice of their unit's text ----------------------------------------------------


def _header(title: str | None, path: str | None, heading: str | None) -> str:
    from .chunking import context_header

    law = SimpleNamespace(title=title or "")
    unit = SimpleNamespace(path=tuple(json.loads(path or "[]")), heading=heading or "")
    return context_header(law, unit)


def recipe(text: str, title, path, heading, body) -> tuple[str | None, str | None, str | None]:
    """How a chunk's text is shipped: (head, spans, None) when it is a head followed by slices of its unit's body
    joined by newlines — head None for the unit's context header and a newline (`chunking.context_header`), else
    the head as it is ("" for none); body the unit's text (its heading when that is empty); spans JSON
    [[start, end], …], adjacent paragraphs merged into one slice — else (None, None, text)."""
    if heading is None:  # no unit of that id: shipped whole
        return None, None, text
    whole = body or heading
    header = _header(title, path, heading) + "\n"
    if text.startswith(header):
        candidates = [(None, text[len(header) :])]
    else:
        candidates = [("", text)] + ([(text.split("\n", 1)[0] + "\n", text.split("\n", 1)[1])] if "\n" in text else [])
    for head, rest in candidates:
        spans = _spans(rest, whole)
        if spans is not None:
            return head, spans, None
    return None, None, text


def _spans(rest: str, whole: str) -> str | None:
    """`rest` as slices of `whole` joined by newlines (JSON [[start, end], …]), or None when it is not."""
    if rest == whole:
        return json.dumps([[0, len(whole)]])
    spans: list[list[int]] = []
    at = 0
    for piece in rest.split("\n"):
        start = whole.find(piece, at)
        if start < 0:
            return None
        if spans and start == spans[-1][1] + 1 and whole[spans[-1][1]] == "\n":
            spans[-1][1] = start + len(piece)  # the next paragraph: one slice
        else:
            spans.append([start, start + len(piece)])
        at = start + len(piece)
    return json.dumps(spans, separators=(",", ":"))


def chunk_text(title, path, heading, body, head, spans, text) -> str:
    """A chunk's text from its recipe (the inverse of `recipe`)."""
    if text is not None:
        return text
    if spans is None:
        raise ReleaseError("a chunk of the release has neither its text nor slices of its unit; pull again")
    whole = body or heading or ""
    if head is None:
        head = _header(title, path, heading) + "\n"
    return head + "\n".join(whole[a:b] for a, b in json.loads(spans))


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


REBUILT_CHUNKS = (
    "SELECT c.row, c.chunk_id, c.boe_id, c.article_id, c.wording, c.part, "
    "chunk_text(l.title, a.path, a.heading, a.text, c.head, c.spans, c.text) AS text "
    "FROM rel.chunks c LEFT JOIN rel.articles a ON a.boe_id = c.boe_id AND a.article_id = c.article_id "
    "AND a.wording = c.wording LEFT JOIN rel.laws l ON l.boe_id = c.boe_id"
)


def _open_part(gz: Path, scratch: Path) -> Path:
    """The catalogue part `gz` uncompressed at `scratch`, with the index its joins need."""
    gunzip_file(gz, scratch)
    try:
        connection = sqlite3.connect(scratch, isolation_level=None)
        try:
            tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = {"laws", "articles", "chunks", "digests", "removed"} - tables
            if missing:
                raise ReleaseError(f"{gz}: a catalogue part without its {', '.join(sorted(missing))} table; pull again")
            connection.execute("CREATE INDEX IF NOT EXISTS unit ON articles (boe_id, article_id, wording)")
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise ReleaseError(f"{gz}: not a readable catalogue part ({exc}); pull again") from None
    return scratch


def _attach(connection: sqlite3.Connection, part_db: Path) -> None:
    connection.create_function("chunk_text", 7, chunk_text, deterministic=True)
    connection.create_function("sha256_text", 1, _sha256_text, deterministic=True)
    connection.execute("ATTACH DATABASE ? AS rel", (str(part_db),))


def _part_texts(connection: sqlite3.Connection, first: int, count: int) -> list[str]:
    return [r[0] for r in connection.execute(
        f"SELECT text FROM ({REBUILT_CHUNKS} WHERE c.row >= ? AND c.row < ? ORDER BY c.row)", (first, first + count)
    )]  # fmt: skip


def _insert_rows(connection: sqlite3.Connection, base: int) -> tuple[list[str], int]:
    """Insert the attached part's laws, units and chunks (texts rebuilt, rows from `base`); check every law's
    rows against the publisher's digest and record them. (laws inserted, chunks inserted)."""
    from . import store

    law_columns = [r[1] for r in connection.execute("PRAGMA rel.table_info(laws)")]
    unit_columns = [r[1] for r in connection.execute("PRAGMA rel.table_info(articles)") if r[1] != "id"]
    connection.execute(
        f"INSERT INTO main.laws ({', '.join(law_columns)}) SELECT {', '.join(law_columns)} FROM rel.laws"
    )
    connection.execute(
        f"INSERT INTO main.articles ({', '.join(unit_columns)}) SELECT {', '.join(unit_columns)} FROM rel.articles "
        "ORDER BY boe_id, position"
    )
    chunks = connection.execute(
        "INSERT INTO main.chunks SELECT row + ?, chunk_id, boe_id, article_id, wording, part, text, sha256_text(text) "
        f"FROM ({REBUILT_CHUNKS}) ORDER BY row",
        (base,),
    ).rowcount
    laws = [r[0] for r in connection.execute("SELECT boe_id FROM rel.laws ORDER BY boe_id")]
    digests = dict(connection.execute("SELECT boe_id, sha256 FROM rel.digests").fetchall())
    connection.execute(DIGESTS)
    for boe_id in laws:
        digest = store.law_digest(connection, boe_id)
        if digests.get(boe_id) != digest:
            raise ReleaseError(
                f"{boe_id}: its rows rebuilt here differ from the publisher's (law digest); the release was made by "
                "an incompatible legalsearch or is damaged; nothing was changed"
            )
        connection.execute("INSERT OR REPLACE INTO digests VALUES (?, ?)", (boe_id, digest))
    return laws, chunks


def _new_catalogue(path: Path) -> sqlite3.Connection:
    """A writer's connection to a new, empty catalogue with the index's tables."""
    from . import store

    connection = store.open_writer(path)  # brings the schema to the latest where the catalogue migrates itself
    present = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "laws" not in present and getattr(store, "SCHEMA", None):
        connection.executescript(store.SCHEMA)
    return connection


def _record_step(connection: sqlite3.Connection, signed: dict, sequence: int, manifest_sha256: str) -> None:
    from . import store

    connection.execute(PULLED)
    connection.execute(
        "INSERT INTO pulled (series, sequence, at, manifest_sha256) VALUES (?, ?, ?, ?)",
        (signed["series"], sequence, store.now(), manifest_sha256),
    )


def _segments_from_part(connection, target: Path, part: Path, rows: int, layout, on_step) -> list[dict]:
    """One segment per vectors file of the part (FAISS and BM25 built here, texts rebuilt); their records. Memory
    stays bounded whatever the part's size: vectors are copied file to file and read `VECTOR_BATCH` rows at a
    time, BM25 postings are analysed `TEXT_BATCH` texts at a time and merged from disk."""
    from . import segments

    records = []
    for number, vectors in enumerate(read_vector_parts(part, rows, layout.full_dim)):
        source = part / vector_files(rows)[number]
        first, count = number * PART_ROWS, len(vectors)
        del vectors  # checked; read again from the file in batches

        def fill(component, folder: Path, source=source, first=first, count=count) -> None:
            _fill_component(component, folder, connection, source, first, count, layout, part)

        records.append(segments._build(target, layout, count, None, on_step, fill))
    return records


def _fill_component(component, folder: Path, connection, source: Path, first: int, count: int, layout, part) -> None:
    """Write one component of a release segment (part rows first… first+count, vectors in `source`) into the
    segment being built, as `segments.write` would from the same rows, without holding them all in memory."""
    from . import segment_components as sc

    if isinstance(component, sc.Vectors) and _copy_vectors(source, folder / sc.VECTORS, count, layout.full_dim):
        return
    if isinstance(component, sc.Faiss) and _faiss_in_batches(component, folder, layout):
        return
    if isinstance(component, sc.Postings):
        _write_postings(connection, first, count, folder / component.name, part)
        return
    vectors = sc.check_npy(source, (count, layout.full_dim), np.float16)
    component.write(folder, sc.Chunks(vectors, [], None))


def _npy_header(shape: tuple, dtype) -> bytes:
    """The header `np.save` writes for a C-ordered array of `shape` and `dtype`."""
    import io

    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _copy_vectors(source: Path, target: Path, count: int, full_dim: int) -> bool:
    """The release's vectors file copied as the segment's (the kernel copies: nothing read into memory) when it
    holds the bytes `np.save` would write for them; False (nothing written) otherwise."""
    header = _npy_header((count, full_dim), np.float16)
    with open(source, "rb") as f:
        same = f.read(len(header)) == header
    if not same or source.stat().st_size != len(header) + count * full_dim * 2:
        return False
    shutil.copyfile(source, target)
    return True


def _read_rows(path: Path, start: int, stop: int) -> np.ndarray:
    """Rows start…stop of a C-ordered .npy file, read (not mapped: memory holds only these rows)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if fortran and len(shape) > 1:
            raise ReleaseError(f"{path}: a Fortran-ordered array where rows were expected; pull again")
        width = int(np.prod(shape[1:], dtype=np.int64))
        f.seek(f.tell() + start * width * dtype.itemsize)
        rows = np.fromfile(f, dtype=dtype, count=(stop - start) * width)
    return rows.reshape((stop - start, *shape[1:]))


def _faiss_in_batches(component, folder: Path, layout) -> bool:
    """A flat FAISS file (Flat, SQfp16, binary Flat: each vector coded alone) built from the segment's vectors
    `VECTOR_BATCH` rows at a time: the same file as one `build_faiss` over all of them. False (nothing written)
    for an index that trains or links vectors (HNSW, int8)."""
    import faiss

    from . import segment_components as sc
    from .matryoshka import matryoshka

    if layout.kind != "flat":
        return False
    binary, dim = layout.quantize == "binary", component.dim
    if binary:
        index = faiss.IndexBinaryFlat(dim)
    else:
        index = faiss.index_factory(dim, sc.factory(layout.kind, layout.quantize, dim), faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            return False
    path = folder / sc.VECTORS
    rows = sc.check_npy(path, None, None).shape[0]
    batches = (matryoshka(_read_rows(path, s, min(rows, s + VECTOR_BATCH)), dim) for s in range(0, rows, VECTOR_BATCH))
    (folder / "faiss").mkdir(exist_ok=True)
    if not binary and _stream_faiss(index, rows, batches, folder / component.name):
        return True
    for prefixes in batches:
        index.add(np.packbits(prefixes > 0, axis=1) if binary else prefixes)
    sc._write_faiss(index, folder / component.name, binary)
    return True


def _stream_faiss(empty, rows: int, batches: Iterator[np.ndarray], target: Path) -> bool:
    """Write the FAISS file of a flat float index (`empty`, nothing added) holding `rows` vectors, their codes
    streamed batch by batch: memory holds one batch's codes, not the file's. FAISS writes such an index as a
    header (its `ntotal` at bytes 8…16), the length of its codes, then the codes, each vector's alone; that layout
    is checked against FAISS's own serialisation of one vector first (False, nothing read or written, when it
    differs)."""
    import faiss

    header = faiss.serialize_index(empty).tobytes()
    one = faiss.clone_index(empty)
    one.add(np.eye(1, empty.d, dtype=np.float32))
    single = faiss.serialize_index(one).tobytes()
    code_size, unit = len(single) - len(header), int.from_bytes(single[len(header) - 8 : len(header)], "little")
    if not (
        len(header) >= 24 and code_size > 0 and unit > 0 and single[:8] == header[:8]
        and int.from_bytes(single[8:16], "little") == 1 and single[16 : len(header) - 8] == header[16:-8]
    ):  # fmt: skip
        return False
    with open(target, "wb") as out:
        out.write(header[:8] + rows.to_bytes(8, "little") + header[16:-8] + (rows * unit).to_bytes(8, "little"))
        for prefixes in batches:
            batch = faiss.clone_index(empty)
            batch.add(prefixes)
            codes = faiss.serialize_index(batch)
            if len(codes) - len(header) != len(prefixes) * code_size:
                raise RuntimeError(f"FAISS serialised {len(prefixes)} vectors in {len(codes) - len(header)} bytes")
            out.write(memoryview(codes)[len(header) :])
            del batch, codes
    return True


def _write_postings(connection: sqlite3.Connection, first: int, count: int, folder: Path, part: Path) -> None:
    """The BM25 postings of part rows first… first+count saved in `folder`, the files `Postings.merge` of their
    `TEXT_BATCH` batches would save: each batch's postings (texts rebuilt and analysed) are saved aside, then
    merged from disk a block of terms at a time, so memory holds one batch's tokens, whatever the part's size."""
    from . import lexical

    aside = folder.parent / ".bm25-batches"
    aside.mkdir()
    try:
        batches = []
        for number, start in enumerate(range(first, first + count, TEXT_BATCH)):
            size = min(TEXT_BATCH, first + count - start)
            texts = _part_texts(connection, start, size)
            if len(texts) != size:
                raise ReleaseError(f"{part}: chunk rows missing from the catalogue part at {start}…; pull again")
            lexical.Postings.build(texts).save(aside / str(number))
            del texts
            batches.append(_Batch.load(aside / str(number), start - first))
        _merge_batches(batches, folder)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


@dataclass
class _Batch:
    """One batch's saved postings: its terms, term offsets and where its rows start in the segment."""

    folder: Path
    terms: list[str]
    indptr: np.ndarray
    offset: int
    global_ids: np.ndarray | None = None  # each term's number in the merged vocabulary

    @classmethod
    def load(cls, folder: Path, offset: int) -> _Batch:
        from . import lexical

        terms = json.loads((folder / lexical.TERMS).read_text(encoding="utf-8"))
        return cls(folder, terms, np.load(folder / lexical.INDPTR, allow_pickle=False), offset)


def _merge_batches(batches: list[_Batch], folder: Path) -> None:
    """`lexical.Postings.merge` of consecutive batches (all rows kept), written to `folder` block by block."""
    from . import lexical

    vocabulary = sorted(set().union(*(b.terms for b in batches)))
    position = {t: i for i, t in enumerate(vocabulary)}
    counts = np.zeros(len(vocabulary), dtype=np.int64)
    for batch in batches:
        batch.global_ids = np.array([position[t] for t in batch.terms], dtype=np.int64)
        counts[batch.global_ids] += np.diff(batch.indptr)
    del position
    indptr = np.zeros(len(vocabulary) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / lexical.TERMS).write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
    np.save(folder / lexical.INDPTR, indptr, allow_pickle=False)
    lengths = [np.load(b.folder / lexical.LENGTHS, allow_pickle=False).astype(np.int32) for b in batches]
    np.save(folder / lexical.LENGTHS, np.concatenate(lengths) if lengths else np.zeros(0, np.int32))
    total = int(indptr[-1])
    with open(folder / lexical.DOCS, "wb") as docs_file, open(folder / lexical.TFS, "wb") as tfs_file:
        docs_file.write(_npy_header((total,), np.int32))
        tfs_file.write(_npy_header((total,), np.float32))
        stops = np.searchsorted(indptr, np.arange(POSTINGS_BLOCK, total, POSTINGS_BLOCK), side="right") - 1
        bounds = sorted({0, *stops.tolist(), len(vocabulary)})
        for low, high in itertools.pairwise(bounds):
            docs, tfs = _merged_block(batches, low, high)
            docs_file.write(docs.tobytes())
            tfs_file.write(tfs.tobytes())


def _merged_block(batches: list[_Batch], low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """The merged postings of global terms low… high: each batch's slice of them, rows renumbered, in term order
    and, within a term, in row order (batches are consecutive rows)."""
    from . import lexical

    owners, docs, tfs = [], [], []
    for batch in batches:
        first, last = np.searchsorted(batch.global_ids, [low, high])
        start, stop = int(batch.indptr[first]), int(batch.indptr[last])
        owners.append(np.repeat(batch.global_ids[first:last], np.diff(batch.indptr[first : last + 1])))
        docs.append(_read_rows(batch.folder / lexical.DOCS, start, stop).astype(np.int64) + batch.offset)
        tfs.append(_read_rows(batch.folder / lexical.TFS, start, stop).astype(np.float32))
    order = np.argsort(np.concatenate(owners), kind="stable")
    return np.concatenate(docs)[order].astype(np.int32), np.concatenate(tfs)[order]


def _insert_segments(connection: sqlite3.Connection, records: list[dict], base: int) -> None:
    from . import store

    for number, record in enumerate(records):
        connection.execute(
            "INSERT INTO main.segments VALUES (?, ?, ?, ?)",
            (record["name"], base + number * PART_ROWS, record["rows"], store.now()),
        )


def _part_rows(connection: sqlite3.Connection) -> int:
    rows = connection.execute("SELECT COUNT(*), COALESCE(MAX(row) + 1, 0) FROM rel.chunks").fetchone()
    if rows[0] != rows[1]:
        raise ReleaseError("the release's chunk rows are not 0…n-1; pull again")
    return rows[0]


# --- a follower: installing a full release, applying a delta -------------------------------------------------


def install_full(part: Path, signed: dict, index: Path, manifest_sha256: str = "", on_step=None) -> dict:
    """Make `index` a complete index from a downloaded, verified full release folder `part` (the manifest's
    `full` part, its files checked with `check_files`): the catalogue rebuilt from the catalogue part (chunk texts
    rebuilt from their units, checked against the publisher's law digests), one segment per vectors file (FAISS
    files and BM25 postings built here), written into a sibling folder and renamed into place like a rewrite
    (a previous index at `index` is replaced only once the new one is whole). Records the release step
    (`held_release`). Takes the index's writer lock. Returns the index's manifest as read back."""
    from . import store

    part, index = Path(part), store.real_path(index)
    store.check_target(index)
    static = _index_manifest(part)
    with store.WriterLock(index), store.storage_errors(index, lambda: 4 * _tree_bytes(part)):
        index.parent.mkdir(parents=True, exist_ok=True)
        building = index.parent / f".{index.name}.building-{os.getpid()}"
        store._remove_own(building)
        building.mkdir()
        (building / store.BUILDING_MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
        try:
            (building / store.MANIFEST).write_text(json.dumps(static, ensure_ascii=False, indent=1), encoding="utf-8")
            scratch = _open_part(part / CATALOGUE, building / ".release-catalogue.sqlite")
            connection = _new_catalogue(building / store.DATABASE)
            try:
                _attach(connection, scratch)
                rows = _part_rows(connection)
                records = _segments_from_part(connection, building, part, rows, store.layout_of(static), on_step)
                connection.execute("BEGIN IMMEDIATE")
                _insert_segments(connection, records, 0)
                laws, chunks = _insert_rows(connection, 0)
                store._log_commit(connection, "pull", None, laws, [], chunks, 0, 0)
                _record_step(connection, signed, signed["full"]["sequence"], manifest_sha256)
                connection.execute("COMMIT")
                connection.execute("DETACH DATABASE rel")
            finally:
                connection.close()
            scratch.unlink()
            seal(building, store.BUILDING_MARKER)
            store._swap_into_place(building, index)
        finally:
            store._remove_own(building)
    return store.read_manifest(index)


def _index_manifest(part: Path) -> dict:
    from . import store

    path = part / INDEX_MANIFEST
    try:
        static = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{path}: unreadable ({exc}); pull again") from None
    problem = store._manifest_problem(static)
    if problem or static.get("format_version") != store.FORMAT_VERSION:
        raise ReleaseError(f"{path}: not an index manifest this legalsearch reads ({problem or 'another format'})")
    return static


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _delta_of(signed: dict, step_to: int) -> dict:
    for delta in signed["deltas"]:
        if delta["to"] == step_to:
            return delta
    raise ReleaseError(f"the manifest has no delta to sequence {step_to}")


def apply_delta(index: Path, part: Path, signed: dict, step_to: int, manifest_sha256: str = "", on_step=None) -> dict:
    """Apply one downloaded, verified delta folder `part` (the delta of the manifest whose `to` is `step_to`) to
    `index` as one commit: a new segment (shipped vectors, FAISS and BM25 built here) renamed into
    `segments/`, then one SQLite transaction that removes the `removed` laws' rows (their chunks' rows marked
    deleted), inserts the shipped rows (texts rebuilt, checked against the law digests), records the release
    step and logs a `pull` commit; readers and `serve` move to it like after any update. The index must hold the
    delta's `from` sequence of the same series (else `ReleaseError`, nothing changed). An empty delta only
    records the step. Takes the index's writer lock; merges the small segments deltas leave (`merge_small`). Returns the
    index's manifest as read back."""
    import tempfile

    from . import store

    index = store.real_path(index)
    delta = _delta_of(signed, step_to)
    with store.WriterLock(index):
        store.tidy(index)  # what a killed writer left (a segment no commit names), as every writer does first
        manifest = store.read_manifest(index)
        held = held_release(index)
        if held is None or held["series"] != signed["series"] or held["sequence"] != delta["from"]:
            have = "no release" if held is None else f"release {held['sequence']} of series {held['series'][:12]}"
            raise ReleaseError(
                f"{index}: holds {have}; the delta applies to release {delta['from']} of series "
                f"{signed['series'][:12]}; nothing was changed: install the full release"
            )
        with store.storage_errors(index, lambda: 4 * _tree_bytes(part) + (1 << 20)):
            if not delta.get("files"):
                _record_only(index, signed, step_to, manifest_sha256)
                return store.read_manifest(index)
            with tempfile.TemporaryDirectory(prefix="legalsearch-delta-") as scratch_dir:
                scratch = _open_part(Path(part) / CHANGES, Path(scratch_dir) / "changes.sqlite")
                _commit_delta(index, Path(part), scratch, manifest, signed, step_to, manifest_sha256, on_step)
        merge_small(index)
    return store.read_manifest(index)


def merge_small(index: Path) -> dict | None:
    """After a delta: merge the small segments deltas leave once there are more than `MAX_SMALL` of them (a few
    thousand rows: a second or two, so a delta stays quick), and everything when deleted rows pass the store's
    share (as any update does). The big segments of a full release are never rewritten just for their number.
    The caller holds the writer lock. What was merged, or None."""
    from . import store

    manifest = store.read_manifest(index)
    parts = manifest["segments"]
    rows, deleted = sum(p["rows"] for p in parts), sum(p["deleted"] for p in parts)
    if rows and deleted / rows > store.MAX_DELETED_SHARE:
        return store.compact(index, everything=True)
    small = [p["name"] for p in parts if p["rows"] < SMALL_ROWS]
    if len(small) <= MAX_SMALL:
        return None
    return store._compact(index, manifest, small, None)


def _record_only(index: Path, signed: dict, sequence: int, manifest_sha256: str) -> None:
    from . import store

    connection = store.open_writer(index / store.DATABASE)
    try:
        connection.execute("BEGIN IMMEDIATE")
        _record_step(connection, signed, sequence, manifest_sha256)
        connection.execute("COMMIT")
    finally:
        connection.close()


def _commit_delta(index, part, scratch, manifest, signed, sequence, manifest_sha256, on_step) -> None:
    """The segment first (renamed in), then one transaction: the commit point, as `store.commit`."""
    from . import segments, store

    layout = store.layout_of(manifest)
    connection = store.open_writer(index / store.DATABASE)
    written: list[dict] = []
    try:
        _attach(connection, scratch)
        rows = _part_rows(connection)
        written = _segments_from_part(connection, index, part, rows, layout, on_step)
        store.pause("segment-written")
        connection.execute("BEGIN IMMEDIATE")
        base = connection.execute("SELECT COALESCE(MAX(base_row + rows), 0) FROM segments").fetchone()[0]
        _insert_segments(connection, written, base)
        removed = {r[0] for r in connection.execute("SELECT boe_id FROM rel.removed")}
        shipped = {r[0] for r in connection.execute("SELECT boe_id FROM rel.laws")}
        deleted = store._delete_laws(connection, removed | shipped)
        laws, chunks = _insert_rows(connection, base)
        record = written[0] if len(written) == 1 else None
        store._log_commit(connection, "pull", record, laws, sorted(removed - shipped), chunks, deleted, 0)
        _record_step(connection, signed, sequence, manifest_sha256)
        store.pause("before-commit")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        for record in written:
            shutil.rmtree(index / segments.FOLDER / record["name"], ignore_errors=True)
        raise
    finally:
        connection.close()
    store.pause("committed")
