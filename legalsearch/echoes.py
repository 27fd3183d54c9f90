"""What an error answered to a client may repeat of its request, and what it may say about the machine.

An error names the field it is about; of the value the client sent it repeats at most a short prefix made of
letters, digits and plain punctuation (so no markup, no control characters, no 50,000 ids), and it never shows
a local file path (an index folder, a model folder, a cache)."""

from __future__ import annotations

import re
from collections.abc import Iterable

SHOWN_CHARS = 24  # of one value
MAX_DETAIL_CHARS = 300  # of a whole error line
UNSAFE = re.compile(r"[^\w .,:;()/ºª+-]")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])(?:~|[A-Za-z]:)?(?:/[^\s/'\"`;,()]+){2,}/?")


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A harmless prefix of `value` for an error line: at most `limit` characters, anything but letters, digits
    and plain punctuation replaced by '?', and '…' where it was cut."""
    text = str(value)
    return UNSAFE.sub("?", text[:limit]) + ("…" if len(text) > limit else "")


def bounded(message: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """The first line of `message`, without control characters or angle brackets, at most `limit` characters."""
    line = CONTROL.sub(" ", (str(message).splitlines() or [""])[0]).replace("<", "?").replace(">", "?")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def without_paths(message: str) -> str:
    """`message` with each absolute file path replaced by its last part ('…/idx'): a client has no business
    knowing where the index, the model or the cache lie on the server."""
    return ABSOLUTE_PATH.sub(lambda m: "…/" + m[0].rstrip("/").rsplit("/", 1)[-1], message)


def redacted(message: str, values: Iterable[object] = ()) -> str:
    """A library error line fit for a client: each of the request's `values` it quotes cut to `shown(value)`,
    file paths reduced to their last part, and the whole `bounded`."""
    message = str(message)[:100_000]  # bounds the work; a request value is far shorter (queries ≤ 4,000 chars)
    texts = {v for v in _flat(values) if isinstance(v, str) and v}
    for value in sorted(texts, key=len, reverse=True):
        short = shown(value)
        if short != value:
            message = message.replace(repr(value), repr(short)).replace(value, short)
    return bounded(without_paths(message))


def _flat(values: Iterable[object]) -> Iterable[object]:
    for value in values:
        if isinstance(value, (list, tuple, set, frozenset)):
            yield from _flat(value)
        elif isinstance(value, dict):
            yield from _flat(value.values())
        else:
            yield value
