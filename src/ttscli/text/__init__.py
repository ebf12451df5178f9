"""Text front end: text to Tacotron 2 symbol ids, exactly as NVIDIA's pipeline computes them.

``text_to_sequence(text)`` gives the ids NVIDIA's ``text_to_sequence(text, ["english_cleaners"])``
gives (DeepLearningExamples, the code behind the torch.hub weights), on every text where that
code does not crash. ``frontend="original"`` gives those of the original NVIDIA/tacotron2
repository, which differs only in transliterating with the Unidecode package.

The pipeline, per segment: ``{...}`` groups are ARPAbet phones (``{HH AH0 L OW1}``; unknown
phones dropped, lowercase is not ARPAbet); the text around them is transliterated to ASCII,
lowercased, numbers spelled out, abbreviations expanded and whitespace runs collapsed to one
space (leading and trailing ones included, never stripped), then each character that is a
symbol becomes its id and every other character is dropped.

NVIDIA's quirks are kept, because the published weights were trained with them: text after a
newline that follows a ``{...}`` group is dropped; ``_`` is read as id 0 (the padding id) as on
CPython 3.11/3.12 (``keep_underscore=False`` drops it as other versions do); ``1,5`` reads
"fifteen"; ``2st`` reads "second".

Where this differs from NVIDIA's code (nowhere in the ids of a text NVIDIA can read):

- No crashes. ``$`` amounts with a stray comma (``$,5``, ``$1,.5``, ``$.,5``) ignore the comma:
  "five dollars", "one dollar, five cents", "five cents". Numbers of 10^36 or more (37+ digits
  after leading zeros) are read digit by digit, "one two three ...", the last digit taking the
  ordinal form for ordinals ("... nine ninth"); this covers plain numbers, ordinals, either
  side of a decimal point, and dollar amounts.
- No warnings. DLE warns about characters it has no rule for; here they are deleted silently
  and callers use `check_speakable`, which raises `TextError` when nothing is left to say.
- Any ``str`` is accepted: control characters (NUL included) are dropped, except whitespace
  (``\\t\\n\\r\\v\\f``, ``\\x1c``-``\\x1f``), which becomes a space; lone surrogates are deleted.
- Linear time: the ARPAbet split is a scan instead of NVIDIA's quadratic regex loop, and the
  number patterns skip retries inside digit runs, so a 1 MB line takes about a second. Each
  distinct number costs inflect about 0.15 ms once (results are cached).
- Nothing heavy at import: inflect is imported on the first digit, Unidecode on the first
  non-ASCII text with ``frontend="original"``, the DLE table on the first non-ASCII character.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ..errors import TextError
from .braces import segments
from .cleaners import english_cleaners
from .symbols import (
    ARPABET_TO_ID,
    SPEAKABLE_IDS,
    SYMBOLS,
    ids_of_arpabet,
    ids_of_chars,
)

__all__ = [
    "FRONTENDS",
    "SYMBOLS",
    "check_speakable",
    "clean_text",
    "sequence_to_text",
    "text_to_sequence",
]

#: Known front ends: "dle" (the torch.hub weights'), "original" (NVIDIA/tacotron2's).
FRONTENDS = ("dle", "original")


def _check_frontend(frontend: str) -> None:
    if frontend not in FRONTENDS:
        raise TextError(
            f"unknown text front end {frontend!r}: choose one of {', '.join(FRONTENDS)}"
        )


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise TextError(f"text must be a str, not {type(text).__name__}")


def text_to_sequence(
    text: str, frontend: str = "dle", *, keep_underscore: bool = True
) -> list[int]:
    """The symbol ids NVIDIA's front end gives for `text` (no end-of-sequence id).

    Never raises for a str: text with nothing speakable gives [] or only punctuation and
    space ids (see `check_speakable`). Raises TextError for an unknown `frontend`.
    """
    _check_frontend(frontend)
    _check_text(text)
    ids: list[int] = []
    for is_arpabet, segment in segments(text):
        if len(segment) <= _CACHED_SEGMENT_CHARS:
            ids += _segment_ids(is_arpabet, segment, frontend, keep_underscore)
        elif is_arpabet:
            ids += ids_of_arpabet(segment)
        else:
            ids += ids_of_chars(english_cleaners(segment, frontend), keep_underscore)
    return ids


_CACHED_SEGMENT_CHARS = 200  # short segments repeat (phrases, phones); long ones rarely do


@functools.lru_cache(maxsize=4096)
def _segment_ids(is_arpabet: bool, segment: str, frontend: str, keep_underscore: bool):
    if is_arpabet:
        return tuple(ids_of_arpabet(segment))
    return tuple(ids_of_chars(english_cleaners(segment, frontend), keep_underscore))


def clean_text(text: str, frontend: str = "dle") -> str:
    """`text` as the voice reads it: english_cleaners output, with ARPAbet kept in braces.

    Plain text is cleaned as NVIDIA cleans it (characters that are no symbol, such as ``"``,
    are still there; they are dropped only when mapped to ids). Each ``{...}`` group is shown
    with its valid phones only, and left out when it has none.
    """
    _check_frontend(frontend)
    _check_text(text)
    parts = []
    for is_arpabet, segment in segments(text):
        if is_arpabet:
            phones = [p for p in segment.split() if p in ARPABET_TO_ID]
            if phones:
                parts.append("{" + " ".join(phones) + "}")
        else:
            parts.append(english_cleaners(segment, frontend))
    return "".join(parts)


def sequence_to_text(ids: Iterable[int]) -> str:
    """Render ids back to text; runs of ARPAbet ids become one group such as ``{HH AH0}``.

    Ids outside the table are skipped.
    """
    out: list[str] = []
    phones: list[str] = []
    for raw in ids:
        symbol_id = int(raw)
        if not 0 <= symbol_id < len(SYMBOLS):
            continue
        symbol = SYMBOLS[symbol_id]
        if symbol.startswith("@"):
            phones.append(symbol[1:])
            continue
        if phones:
            out.append("{" + " ".join(phones) + "}")
            phones = []
        out.append(symbol)
    if phones:
        out.append("{" + " ".join(phones) + "}")
    return "".join(out)


def check_speakable(text: str, frontend: str = "dle", *, keep_underscore: bool = True) -> list[int]:
    """The ids of `text`, or TextError naming the problem when it has nothing to say.

    Speakable means at least one letter or ARPAbet phone is left after cleaning; text that
    cleans to nothing, or to punctuation and spaces only, raises TextError.
    """
    ids = text_to_sequence(text, frontend, keep_underscore=keep_underscore)
    if any(i in SPEAKABLE_IDS for i in ids):
        return ids
    raise TextError(_nothing_to_say(text, frontend))


def _nothing_to_say(text: str, frontend: str) -> str:
    if not text.strip():
        return "nothing to say: the text is empty"
    shown = text if len(text) <= 40 else text[:37] + "..."
    problems = []
    groups = [seg for is_arpabet, seg in segments(text) if is_arpabet]
    if groups and not any(ids_of_arpabet(seg) for seg in groups):
        problems.append("the text in braces is not ARPAbet (write phones like {HH AH0 L OW1})")
    unreadable = []
    for char in list(dict.fromkeys(text))[:1000]:
        if char.isspace() or (groups and char in "{}"):
            continue
        if not ids_of_chars(english_cleaners(char, frontend)):
            unreadable.append(char)
            if len(unreadable) == 8:
                break
    if unreadable:
        listed = " ".join(repr(c) for c in unreadable)
        problems.append(f"characters the voice cannot read were dropped: {listed}")
    if not problems:
        problems.append("only punctuation and spaces are left")
    return f"nothing to say in {shown!r}: no letters or ARPAbet phones; " + "; ".join(problems)
