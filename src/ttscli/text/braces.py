"""Split text into plain segments and {ARPAbet} groups as NVIDIA's loop does, in linear time.

NVIDIA applies ``re.match(r"(.*?)\\{(.+?)\\}(.*)", text)`` in a loop: group 1 is plain text,
group 2 ARPAbet, and the loop goes on with group 3. Without DOTALL ``.`` stops at a newline, so
only the first line can hold a match, and once one is found everything after that line is lost.
Applied in a loop the regex is quadratic in the number of braces; `match_braces` finds the same
groups by scanning, and `segments` walks the text by index without copying its tail.
"""

from __future__ import annotations

from collections.abc import Iterator


def match_braces(text: str, start: int = 0, stop: int | None = None) -> tuple[int, int, int] | None:
    """Where NVIDIA's brace regex matches ``text[start:stop]``: (open, close, line_end) or None.

    The groups are ``text[start:open]``, ``text[open + 1:close]`` and
    ``text[close + 1:line_end]``. With `stop` given, ``text[start:stop]`` must hold no newline
    (the caller knows; this keeps repeated calls linear); without it, the first newline ends
    the line that can match.
    """
    if stop is None:
        stop = text.find("\n", start)
        if stop < 0:
            stop = len(text)
    open_ = text.find("{", start, stop)
    if open_ < 0:
        return None
    close = text.find("}", open_ + 2, stop)  # group 2 holds at least one character
    if close < 0:
        return None
    return open_, close, stop


def segments(text: str) -> Iterator[tuple[bool, str]]:
    """Yield (is_arpabet, segment) in order; empty plain segments are skipped."""
    start, stop = 0, None
    while start < (len(text) if stop is None else stop):
        found = match_braces(text, start, stop)
        if found is None:
            rest = text[start:] if stop is None else text[start:stop]
            if rest:
                yield False, rest
            return
        open_, close, stop = found
        if open_ > start:
            yield False, text[start:open_]
        yield True, text[open_ + 1 : close]
        start = close + 1
