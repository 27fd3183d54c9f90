"""Text fit for a terminal. A law's text, a title or an error quoting either may hold escape sequences (ESC[2J
clears the screen, OSC 8 makes a hidden link, OSC 52 writes the clipboard) or other control characters; none of
them may reach the user's terminal, whether stdout is a tty or a pipe. Newlines and tabs stay; escape sequences
go whole; any other C0/C1 control character, DEL and the bidirectional overrides go."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: ESC [ … final byte (ESC[2J, ESC[31m)
    r"|\x1b[\]PX^_][^\n]*?(?:\x07|\x1b\\|\x9c|$)"  # OSC, DCS, SOS, PM, APC: to BEL, ST or the line's end
    r"|\x1b[ -/]*[0-~]"  # any other escape (ESC c resets the terminal)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # the one-byte CSI
    r"|[\x90\x98\x9d-\x9f][^\n]*?(?:\x07|\x9c|\x1b\\|$)",  # the one-byte DCS, SOS, OSC, PM, APC
    re.MULTILINE,
)
# C0 but tab and newline, DEL, C1; the bidirectional embeddings, overrides and isolates (U+202A-E, U+2066-9)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
C1_AND_BIDI = re.compile(r"[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """`text` without escape sequences or control characters (newlines and tabs kept; CR LF becomes LF)."""
    if not text:
        return text
    return CONTROL.sub("", ESCAPE_SEQUENCE.sub("", text.replace("\r\n", "\n")))


def json_text(data: object) -> str:
    """`data` as JSON (indent 1, UTF-8 kept) that a terminal shows as text: JSON escapes C0 characters itself;
    C1 characters and bidirectional overrides, which it leaves raw, are written as \\u escapes too. The data is
    unchanged for a program that parses it."""
    text = json.dumps(data, ensure_ascii=False, indent=1)
    return C1_AND_BIDI.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


class SafeConsole(Console):
    """A rich Console whose output never carries control characters from the text it prints: every string is
    `clean`ed before rich parses it (markup, highlighting and wrapping would split a sequence), and every segment
    of text again before it is written (a `Text` built by hand); rich's own styles are added after, so they stay."""

    def render_str(self, text: str, **kwargs) -> Text:
        return super().render_str(clean(text), **kwargs)

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not segment.text:
                yield segment
            else:
                yield Segment(clean(segment.text), segment.style, segment.control)
